"""Stream parser CPU per token against the answer's length, for the current
stream form (tokens into the newest fragment) and the older flat form
(``response/content`` / ``response/thinking_content``, spec §10.8).

A per-token cost that grows with the tokens already parsed (re-reading the
whole field per token) shows as a figure that rises with the length; the
fast path keeps it flat. The body is fed in 4 KB reads, as the pipeline
reads it (complete lines of each read at once).

    python bench/flat_form_bench.py [--tokens 10000,40000] [--runs 3] [--slow]

``--slow`` adds the general path (the fast path off) for comparison.
"""

from __future__ import annotations

import argparse
import time

import orjson

from ds2proxy.upstream.lines import LineCutter
from ds2proxy.upstream.patch_ops import LEGACY_ANSWER, LEGACY_THINKING, TAIL_CONTENT
from ds2proxy.upstream.stream_parser import StreamParser

READ = 4096


def body(tokens: int, *, flat: bool, thinking: bool, start: str = "start",
         tag_every: int = 0) -> bytes:
    """One round of ``tokens`` path-less tokens after the line that opens the
    field; with ``tag_every``, every so many tokens is ``<div> `` (a "<" that
    may start a think tag until the next character tells)."""
    lines = []
    if flat:
        lines.append({"p": LEGACY_THINKING if thinking else LEGACY_ANSWER, "v": start})
    else:
        kind = "THINK" if thinking else "RESPONSE"
        lines.append({"v": {"response": {"fragments": [{"id": 1, "type": kind, "content": ""}]}}})
        lines.append({"p": TAIL_CONTENT, "o": "APPEND", "v": "start"})
    lines += [{"v": "<div> " if tag_every and n % tag_every == 0 else f"tok{n % 10} "}
              for n in range(tokens)]
    lines.append({"p": "response/status", "o": "SET", "v": "FINISHED"})
    return b"".join(b"data: " + orjson.dumps(line) + b"\n\n" for line in lines)


def per_token_us(data: bytes, tokens: int, runs: int, fast: bool) -> float:
    best = float("inf")
    for _ in range(runs):
        parser = StreamParser(fast_path=fast)
        parser.start_round()
        cutter = LineCutter(for_parser=True)
        started = time.perf_counter()
        for at in range(0, len(data), READ):
            parser.feed_lines(cutter.cut(data[at:at + READ]))
        parser.feed_lines(cutter.rest())
        best = min(best, time.perf_counter() - started)
    return best / tokens * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", default="10000,40000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slow", action="store_true", help="also time the general path")
    args = parser.parse_args()
    counts = [int(n) for n in args.tokens.split(",")]
    paths = [True, False] if args.slow else [True]
    print(f"parser CPU per token (µs), best of {args.runs}, {READ}-byte reads")
    print(f"{'form':>10} {'text':>9} {'path':>8} " + " ".join(f"{n:>9}" for n in counts))
    for flat in (False, True):
        for thinking in (False, True):
            for fast in paths:
                figures = [per_token_us(body(n, flat=flat, thinking=thinking), n, args.runs, fast)
                           for n in counts]
                print(f"{'flat' if flat else 'fragments':>10} "
                      f"{'reasoning' if thinking else 'answer':>9} "
                      f"{'fast' if fast else 'general':>8} "
                      + " ".join(f"{f:>9.2f}" for f in figures), flush=True)
    # Flat reasoning that opens with a think tag (the old model bug, §10.8).
    for fast in paths:
        figures = [per_token_us(body(n, flat=True, thinking=True, start="<think>start"), n,
                                args.runs, fast) for n in counts]
        print(f"{'flat':>10} {'<think>…':>9} {'fast' if fast else 'general':>8} "
              + " ".join(f"{f:>9.2f}" for f in figures), flush=True)
    # Flat reasoning with HTML in it: every 5th token holds a "<".
    for fast in paths:
        figures = [per_token_us(body(n, flat=True, thinking=True, tag_every=5), n,
                                args.runs, fast) for n in counts]
        print(f"{'flat':>10} {'<div> 1/5':>9} {'fast' if fast else 'general':>8} "
              + " ".join(f"{f:>9.2f}" for f in figures), flush=True)


if __name__ == "__main__":
    main()
