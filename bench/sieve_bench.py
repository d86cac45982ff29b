"""Tool-call sieve CPU for one long call block streamed in tiny chunks.

Coding agents write whole files through a tool call and the upstream sends
about one token per chunk, so the sieve sees a block of hundreds of KB a few
characters at a time. A sieve that re-reads or re-copies the block per chunk
costs time that grows with the square of its length; a linear one costs
about the same per KB at any size.

    python bench/sieve_bench.py [--sizes 100000,300000] [--chunk 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import time

from ds2proxy.canonical import ToolChoice, ToolSpec
from ds2proxy.toolcall import ToolSieve

WRITE = ToolSpec("Write", "Write a file", {
    "type": "object", "properties": {"file_path": {"type": "string"},
                                     "content": {"type": "string"}}})


def blocks(size: int) -> dict[str, str]:
    """The block shapes models write, each with a body of ``size`` characters."""
    head = '<tool_calls><invoke name="Write"><parameter name="file_path">a.py</parameter>'
    tail = "</invoke></tool_calls>"
    body = "x" * size
    return {
        "cdata": f'{head}<parameter name="content"><![CDATA[{body}]]></parameter>{tail}',
        "plain": f'{head}<parameter name="content">{body}</parameter>{tail}',
        "json": '<tool_calls><invoke name="Write">'
                + json.dumps({"file_path": "a.py", "content": body}) + tail,
        "comment": f'{head}<!-- {body} --><parameter name="content">x</parameter>{tail}',
    }


def cpu_seconds(text: str, chunk: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        sieve = ToolSieve([WRITE], ToolChoice())
        started = time.process_time()
        for at in range(0, len(text), chunk):
            sieve.feed(text[at:at + chunk])
        sieve.flush()
        best = min(best, time.process_time() - started)
        assert sieve.calls == 1, "the block must become one call"
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,300000")
    parser.add_argument("--chunk", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shapes", default="cdata,plain,json,comment")
    args = parser.parse_args()
    print(f"{'shape':8} {'size':>8} {'chunk':>5} {'cpu s':>8} {'us/KB':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        texts = blocks(size)
        for shape in args.shapes.split(","):
            seconds = cpu_seconds(texts[shape], args.chunk, args.runs)
            print(f"{shape:8} {size:>8} {args.chunk:>5} {seconds:>8.3f} "
                  f"{seconds / (size / 1000) * 1e6:>8.0f}")


if __name__ == "__main__":
    main()
