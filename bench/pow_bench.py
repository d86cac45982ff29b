"""PoW solver benchmark: cost per nonce, solve times, and event-loop health under load.

Run: python bench/pow_bench.py   (about half a minute)

The target is a compiled search costing no more per nonce than one
``hashlib.sha3_256(input).digest()`` call, and a loop that keeps a stream
flowing (p99 gap and /healthz under 10 ms) while 4 solves run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable

from aiohttp import ClientSession, web

from ds2proxy import pow as pow_api
from ds2proxy.pow import Challenge, backend, reference
from ds2proxy.pow.solver import Solver, python_solver

PREFIX = b"3bde54628ea8413fee87_1775380966945_"  # the spec's challenge, 35 bytes
NONCE = 143999
UNREACHABLE = bytes(32)
DIFFICULTY = 144000
CHUNK_GAP = 0.005  # the stream writes a small chunk this often
LOAD_SECONDS = 5.0
IDLE_SECONDS = 2.0


def ns_per_nonce(count: int = 200_000, rounds: int = 7
                 ) -> tuple[float, float, float, float]:
    """Best-of-``rounds`` ns per nonce: compiled (best path and portable single
    lane), pure Python, hashlib.sha3_256.

    The compiled searches and the sha3 call alternate, so a busy moment on the
    machine cannot favour one of them.
    """
    search, portable = backend.NATIVE.search, backend.NATIVE.search_portable
    sha3 = hashlib.sha3_256
    data = PREFIX + str(NONCE).encode()
    native, single, hashed = [], [], []
    for _ in range(rounds):
        native.append(timeit.timeit(
            lambda: search(PREFIX, UNREACHABLE, 100_000, 100_000 + count), number=1))
        single.append(timeit.timeit(
            lambda: portable(PREFIX, UNREACHABLE, 100_000, 100_000 + count), number=1))
        hashed.append(timeit.timeit(lambda: sha3(data).digest(), number=count))
    python_count = 300
    python = min(timeit.repeat(
        lambda: reference.search(PREFIX, UNREACHABLE, NONCE, NONCE + python_count),
        number=1, repeat=3))
    return (min(native) / count * 1e9, min(single) / count * 1e9,
            python / python_count * 1e9, min(hashed) / count * 1e9)


def challenge_with_answer(answer: int, salt: str = "benchsalt") -> Challenge:
    expire_at = 1775380966945
    target = pow_api.deepseek_hash_v1(f"{salt}_{expire_at}_{answer}".encode())
    return Challenge(algorithm="DeepSeekHashV1", challenge=target.hex(), salt=salt,
                     signature="sig", difficulty=DIFFICULTY, expire_at=expire_at,
                     expire_after=300000, target_path="/api/v0/chat/completion")


async def timed_solve(ch: Challenge) -> float:
    began = time.perf_counter()
    answer = await pow_api.solve(ch, check_expiry=False)
    elapsed = time.perf_counter() - began
    if pow_api.deepseek_hash_v1(ch.prefix + str(answer).encode()) != ch.target:
        raise AssertionError(f"wrong answer {answer}")
    return elapsed


async def solve_times() -> tuple[float, float]:
    """Median worst-case solve time, and median over answers spread across the range."""
    worst = [await timed_solve(challenge_with_answer(DIFFICULTY - 1)) for _ in range(5)]
    spread = [await timed_solve(challenge_with_answer(int((i + 0.5) * DIFFICULTY / 25)))
              for i in range(25)]
    return statistics.median(worst), statistics.median(spread)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else float("nan")


def make_app() -> web.Application:
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b"data: tick\n")
                await asyncio.sleep(CHUNK_GAP)
        except ConnectionResetError:  # the reader has what it needs and left
            return resp

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_get("/healthz", healthz)
    return app


async def observe(base: str, session: ClientSession, seconds: float) -> dict[str, float]:
    """p99 loop lag, stream inter-chunk gap and /healthz latency over ``seconds``."""
    lags: list[float] = []
    gaps: list[float] = []
    health: list[float] = []
    deadline = time.perf_counter() + seconds

    async def ticker() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - began - 0.001)

    async def reader() -> None:
        async with session.get(f"{base}/stream") as resp:
            last = None
            while time.perf_counter() < deadline:
                await resp.content.readline()
                now = time.perf_counter()
                if last is not None:
                    gaps.append(now - last)
                last = now

    async def prober() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            async with session.get(f"{base}/healthz") as resp:
                await resp.read()
            health.append(time.perf_counter() - began)
            await asyncio.sleep(0.01)

    await asyncio.gather(ticker(), reader(), prober())
    return {"lag": p99(lags) * 1e3, "gap": p99(gaps) * 1e3, "healthz": p99(health) * 1e3}


SolveFn = Callable[[Challenge], Awaitable[int]]


async def under_load(solve: SolveFn, measure: Awaitable[dict[str, float]]) -> dict[str, float]:
    """Observe while 4 solves at difficulty 144000 are always in flight."""
    async def lane(n: int) -> None:
        while True:
            await solve(challenge_with_answer(DIFFICULTY - 1, salt=f"lane{n}"))

    lanes = [asyncio.create_task(lane(n)) for n in range(4)]
    try:
        return await measure
    finally:
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)


async def loop_health() -> dict[str, dict[str, float]]:
    runner = web.AppRunner(make_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, float]] = {}
    fallback = python_solver()
    try:
        async with ClientSession() as session:
            results["idle"] = await observe(base, session, IDLE_SECONDS)
            results["native"] = await under_load(
                lambda ch: pow_api.solve(ch, check_expiry=False),
                observe(base, session, LOAD_SECONDS))
            await warm_up(fallback)
            results["python"] = await under_load(
                lambda ch: fallback.solve(ch, check_expiry=False),
                observe(base, session, LOAD_SECONDS))
    finally:
        await asyncio.to_thread(fallback.close)
        await runner.cleanup()
    return results


async def warm_up(solver: Solver) -> None:
    """Start the fallback's worker processes before measuring."""
    ch = challenge_with_answer(0)
    await solver.solve(ch, check_expiry=False)


def report_loop(results: dict[str, dict[str, float]]) -> None:
    labels = {"idle": "no solves", "native": "4 solves, compiled",
              "python": "4 solves, pure-Python fallback"}
    for key, label in labels.items():
        r = results[key]
        print(f"p99 during {label:<31}: loop lag {r['lag']:6.2f} ms | "
              f"stream inter-chunk gap {r['gap']:6.2f} ms | /healthz {r['healthz']:6.2f} ms")


def main() -> None:
    print(f"implementation: {pow_api.IMPLEMENTATION}, CPUs: {os.cpu_count()}")
    if backend.NATIVE is None:
        raise SystemExit("the compiled module is not built; run `pip install -e .`")
    native, single, python, sha3 = ns_per_nonce()
    lanes = getattr(backend.NATIVE, "LANES", 1)
    print(f"ns per nonce: compiled ({lanes} lanes) {native:.1f} | compiled single-lane "
          f"{single:.1f} | pure Python {python:.1f} | hashlib.sha3_256 {sha3:.1f}")
    print(f"ratio to hashlib.sha3_256: compiled ({lanes} lanes) {native / sha3:.3f} | "
          f"single-lane {single / sha3:.3f} | pure Python {python / sha3:.1f}")
    worst, spread = asyncio.run(solve_times())
    print(f"solve at difficulty {DIFFICULTY}, worst case (answer {DIFFICULTY - 1}), "
          f"median of 5: {worst * 1e3:.1f} ms")
    print(f"solve at difficulty {DIFFICULTY}, median over 25 answers spread across "
          f"[0, {DIFFICULTY}): {spread * 1e3:.1f} ms")
    report_loop(asyncio.run(loop_health()))


if __name__ == "__main__":
    main()
