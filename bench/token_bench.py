"""What token counting costs: prompts, streamed answers, and the event loop.

    python bench/token_bench.py [--runs 15]

1. A 200,000-character agent prompt (system prompt, tool rounds with code
   and logs, English and Chinese turns, laid out by the real prompt builder):
   the count cold (empty caches), again with the history cached (a fresh
   string of the same text, as an agent resends it), and for the next turn
   (the same conversation plus one new turn: the new turn is encoded).
2. Streamed answers (the recorded DeepSeek answers beside the checkout when
   present, plus a mixed corpus) fed in upstream-sized fragments: time per
   request of the exact streamed count against the old per-fragment
   character estimate; the p50 of the difference is the added cost.
3. Event-loop lag (p99 of a 1 ms ticker's lateness) while a cold 1 MB prompt
   is counted, against an idle loop.
4. A run with no token boundary for the tokenizer to rest on (a line of
   ``=``, one letter repeated, a five-letter word repeated) streamed in 5-character
   fragments under max_tokens until the cap cuts it: CPU per fragment, which
   must not grow with the run (each count near the cap once encoded the whole
   run again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

from ds2proxy import token_pieces, tokens
from ds2proxy.canonical import Message, TextPart
from ds2proxy.prompt.build import build_prompt
from ds2proxy.token_stream import StreamCount
from ds2proxy.tokenizer import load

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "deepseek-sse"
WORDS = ("the agent reads a file then edits the function and runs the tests again while "
         "checking logs for errors in the build output before it commits").split()
CODE = ["def handle(request):", "    body = await request.json()", "    if not body:",
        "        raise ValueError('empty')", "    return web.json_response(body)",
        "for i, item in enumerate(items):", "    total += item.price * item.count"]
CHINESE = "我们需要检查这个函数的返回值，并且在测试失败时查看日志。"


def old_estimate(text: str) -> int:
    """The character-rate estimator this replaced (0.3 / 0.6 token per char)."""
    ascii_chars = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
    return -(-(ascii_chars * 3 + (len(text) - ascii_chars) * 6) // 10)


def agent_turn(rnd: random.Random, n: int) -> list[Message]:
    words = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(20, 80)))
    code = "\n".join(rnd.choice(CODE) for _ in range(rnd.randint(10, 40)))
    log = "\n".join(f"[{n}:{i:04d}] INFO step {i} took {rnd.randint(1, 999)} ms"
                    for i in range(rnd.randint(5, 20)))
    user = f"Turn {n}: {words}\n{CHINESE if n % 3 == 0 else ''}"
    return [Message("user", [TextPart(user)]),
            Message("assistant", [TextPart(f"I will look.\n```python\n{code}\n```")]),
            Message("user", [TextPart(f"Tool output:\n{log}")])]


def agent_messages(chars: int, seed: int = 1) -> list[Message]:
    rnd = random.Random(seed)
    system = " ".join(rnd.choice(WORDS) for _ in range(2500))
    messages = [Message("system", [TextPart(system)])]
    n = 0
    while len(build_prompt(messages)) < chars:
        messages += agent_turn(rnd, n)
        n += 1
    return messages


def clear_caches() -> None:
    tokens._cache.clear()
    token_pieces._pieces.clear()


def bench_prompt(runs: int) -> None:
    messages = agent_messages(200_000)
    prompt = build_prompt(messages)
    cold, cached, next_turn = [], [], []
    for run in range(runs):
        clear_caches()
        cold.append(timed(tokens.count_tokens, prompt))
        cached.append(timed(tokens.count_tokens, build_prompt(messages)))
        longer = build_prompt(messages + agent_turn(random.Random(run), 10_000 + run))
        next_turn.append(timed(tokens.count_tokens, longer))
    print(f"prompt {len(prompt):,} chars, {tokens.count_tokens(prompt):,} tokens "
          f"(old estimate {old_estimate(prompt):,})")
    print(f"  count cold:                      p50 {ms(cold)} ms   min {ms(cold, min)} ms")
    print(f"  count again, history cached:     p50 {ms(cached)} ms   min {ms(cached, min)} ms"
          "   (target <= 5 ms)")
    print(f"  next turn (cached + a new turn): p50 {ms(next_turn)} ms   "
          f"min {ms(next_turn, min)} ms")


def timed(count, text: str) -> float:
    start = time.perf_counter()
    count(text)
    return time.perf_counter() - start


def answers() -> list[str]:
    texts = []
    for path in sorted(FIXTURES.glob("*/expected.json")):
        expected = json.loads(path.read_text())
        texts += [t for t in (expected["thinking"], expected["content"]) if len(t) < 20_000]
    rnd = random.Random(3)
    texts += [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(40, 300)))
              for _ in range(20)]
    texts += ["\n".join(rnd.choice(CODE) for _ in range(30)), CHINESE * 10]
    return texts


def fragments(text: str, rnd: random.Random) -> list[str]:
    cuts = [0]
    while cuts[-1] < len(text):
        cuts.append(cuts[-1] + rnd.randint(1, 6))  # upstream sends a token or two
    return [text[a:b] for a, b in zip(cuts, cuts[1:])]


def per_request(texts: list[list[str]], count) -> list[float]:
    out = []
    for parts in texts:
        start = time.perf_counter()
        count(parts)
        out.append(time.perf_counter() - start)
    return out


def exact(parts: list[str], limit: int | None = None) -> int:
    counter = StreamCount()
    for part in parts:
        if limit is None:
            counter.feed(part)
        elif counter.feed_within(part, limit)[1]:
            break
    return counter.total()


def bench_stream(runs: int) -> None:
    rnd = random.Random(5)
    streams = [fragments(text, rnd) for text in answers()]
    old = [sum(old_estimate(p) for p in parts) for parts in streams]  # warm both paths
    exact_counts = [exact(parts) for parts in streams]
    added, added_limit, new_all, old_all = [], [], [], []
    for _ in range(runs):
        before = per_request(streams, lambda parts: sum(old_estimate(p) for p in parts))
        after = per_request(streams, exact)
        limited = per_request(streams, lambda parts: exact(parts, 4096))
        added += [a - b for a, b in zip(after, before)]
        added_limit += [a - b for a, b in zip(limited, before)]
        new_all += after
        old_all += before
    chars = sum(len("".join(parts)) for parts in streams)
    print(f"streamed answers: {len(streams)} requests, {chars:,} chars, "
          f"{sum(exact_counts):,} tokens (old estimate {sum(old):,})")
    print(f"  per request: old estimator p50 {ms(old_all, digits=3)} ms, "
          f"exact p50 {ms(new_all, digits=3)} ms")
    print(f"  added p50 per streamed request: {ms(added, digits=3)} ms "
          f"(with max_tokens 4096: {ms(added_limit, digits=3)} ms; target <= 0.2 ms)")


async def bench_loop_lag() -> None:
    prompt = build_prompt(agent_messages(1_000_000, seed=9))
    idle = await lateness(asyncio.sleep(0.5))
    clear_caches()
    start = time.perf_counter()
    busy = await lateness(tokens.count_tokens_async(prompt))
    took = time.perf_counter() - start
    print(f"loop lag while counting a {len(prompt) / 1e6:.2f} MB prompt cold "
          f"({took * 1000:.0f} ms): p99 {ms(busy, p99)} ms, max {ms(busy, max)} ms "
          f"(idle loop p99 {ms(idle, p99)} ms)")


async def lateness(work) -> list[float]:
    """How late a 1 ms ticker wakes while ``work`` runs."""
    late: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append(time.perf_counter() - start - 0.001)

    ticker = asyncio.create_task(tick())
    await work
    done.set()
    await ticker
    return late


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def bench_capped_runs() -> None:
    rnd = random.Random(3)
    letters = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
    for unit in ("=====", "xxxxx", letters):
        for cap in (4096, 32000):
            counter, fragments, start = StreamCount(), 0, time.process_time()
            while True:
                _, reached = counter.feed_within(unit, cap)
                fragments += 1
                if reached:
                    break
            took = time.process_time() - start
            print(f"capped run of {unit!r} at max_tokens {cap}: {fragments:,} fragments, "
                  f"{took:.2f} s CPU, {took / fragments * 1e6:.1f} µs per fragment")


def ms(values: list[float], pick=statistics.median, digits: int = 1) -> str:
    return f"{pick(values) * 1000:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print(f"tokenizer backend: {load().backend}")
    bench_prompt(args.runs)
    bench_stream(max(args.runs // 3, 1))
    asyncio.run(bench_loop_lag())
    bench_capped_runs()


if __name__ == "__main__":
    main()
