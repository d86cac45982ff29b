"""The solver stays off the event loop, stops when its caller goes, and falls back."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest

from ds2proxy.pow import Challenge, backend, reference
from ds2proxy.pow.solver import Solver

needs_native = pytest.mark.skipif(backend.NATIVE is None, reason="compiled module not built")

UNREACHABLE = "00" * 32  # no nonce in any tested range hashes to this


def make_challenge(difficulty: int, challenge: str = UNREACHABLE, salt: str = "salt",
                   expire_at: int = 1712345678) -> Challenge:
    return Challenge(algorithm="DeepSeekHashV1", challenge=challenge, salt=salt,
                     signature="sig", difficulty=difficulty, expire_at=expire_at,
                     expire_after=300000, target_path="/api/v0/chat/completion")


class RecordingSearch:
    """Wraps a search: counts chunks, notes the calling thread, can hold a chunk."""

    def __init__(self, search=None, *, hold: bool = False) -> None:
        self.search = search
        self.calls = 0
        self.threads: set[int] = set()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, prefix: bytes, target: bytes, lo: int, hi: int) -> int:
        self.calls += 1
        self.threads.add(threading.get_ident())
        self.entered.set()
        if not self.release.wait(30):
            raise TimeoutError("chunk was never released")
        return self.search(prefix, target, lo, hi) if self.search else -1


class CountingPool(ProcessPoolExecutor):
    """A spawn-based process pool that counts and signals submitted chunks."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self.submitted = 0
        self.first = threading.Event()

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        self.first.set()
        return super().submit(fn, *args, **kwargs)


async def cancel_when(task: asyncio.Task, started: threading.Event) -> None:
    """Cancel ``task`` once its worker has started, and see it end cancelled."""
    assert await asyncio.to_thread(started.wait, 30), "worker never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_search_runs_in_a_worker_thread_and_stops_on_cancel() -> None:
    search = RecordingSearch(hold=True)
    solver = Solver(search, chunk=10)
    task = asyncio.create_task(solver.solve(make_challenge(1000), check_expiry=False))
    await cancel_when(task, search.entered)
    search.release.set()
    await asyncio.to_thread(solver.close)  # returns once the worker has quit
    assert search.calls == 1  # of 100 chunks
    assert threading.get_ident() not in search.threads


async def test_solve_queued_behind_busy_workers_is_cancelled_without_running() -> None:
    search = RecordingSearch(hold=True)
    solver = Solver(search, chunk=10, workers=1)
    busy = asyncio.create_task(solver.solve(make_challenge(1000), check_expiry=False))
    queued = asyncio.create_task(solver.solve(make_challenge(1000), check_expiry=False))
    await cancel_when(queued, search.entered)
    await cancel_when(busy, search.entered)
    search.release.set()
    await asyncio.to_thread(solver.close)
    assert search.calls == 1


@needs_native
async def test_cancelled_native_solve_stops_burning_cpu() -> None:
    search = RecordingSearch(backend.NATIVE.search)
    solver = Solver(search, chunk=4096)
    difficulty = 10**9  # ~244000 chunks, minutes of CPU
    task = asyncio.create_task(solver.solve(make_challenge(difficulty), check_expiry=False))
    await cancel_when(task, search.entered)
    await asyncio.to_thread(solver.close)
    assert search.calls < difficulty // 4096 // 100


async def test_cancelled_python_solve_stops_submitting_to_processes() -> None:
    pool = CountingPool()
    solver = Solver(reference.search, chunk=8, chunk_executor=pool)
    task = asyncio.create_task(solver.solve(make_challenge(10**6), check_expiry=False))
    await cancel_when(task, pool.first)
    await asyncio.to_thread(solver.close)
    assert pool.submitted < 10**6 // 8 // 100


async def test_python_fallback_solves_in_worker_processes() -> None:
    pool = CountingPool()
    solver = Solver(reference.search, chunk=16, chunk_executor=pool)
    target = reference.deepseek_hash_v1(b"salt_1712345678_77").hex()
    try:
        answer = await solver.solve(make_challenge(200, target), check_expiry=False)
    finally:
        await asyncio.to_thread(solver.close)
    assert answer == 77
    assert pool.submitted == 77 // 16 + 1


@needs_native
def test_native_search_releases_the_gil() -> None:
    """With forced thread switches off, this thread only runs again while the
    search thread has let go of the GIL voluntarily, i.e. mid-search."""
    entered, state = threading.Event(), {"done": False}

    def run() -> None:
        entered.set()
        backend.NATIVE.search(b"gil_", bytes(32), 0, 2_000_000)
        state["done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        worker = threading.Thread(target=run)
        worker.start()
        assert entered.wait(30)
        seen_mid_search = not state["done"]
    finally:
        sys.setswitchinterval(old)
    worker.join()
    assert seen_mid_search
    assert state["done"]


ANNOUNCE_SCRIPT = textwrap.dedent("""
    import asyncio, logging, sys
    if sys.argv[1] == "python":
        sys.modules["_ds2proxy_pow"] = None  # as if the build had failed
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    from ds2proxy import pow
    from ds2proxy.pow import reference

    async def main():
        target = reference.deepseek_hash_v1(b"testsalt_1700000000_42").hex()
        ch = pow.Challenge(algorithm="DeepSeekHashV1", challenge=target, salt="testsalt",
                           signature="s", difficulty=1000, expire_at=1700000000,
                           expire_after=300000, target_path="/p")
        first = await pow.solve(ch, check_expiry=False)
        second = await pow.solve(ch, check_expiry=False)
        print(pow.IMPLEMENTATION, first, second)

    asyncio.run(main())
""")


@pytest.mark.parametrize("implementation", [
    pytest.param("native", marks=needs_native), "python"])
def test_implementation_is_chosen_and_logged_once(implementation: str) -> None:
    result = subprocess.run([sys.executable, "-c", ANNOUNCE_SCRIPT, implementation],
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == [implementation, "42", "42"]
    announcements = [line for line in result.stderr.splitlines()
                     if line.startswith("ds2proxy.pow ")]
    assert len(announcements) == 1
    if implementation == "native":
        assert "compiled" in announcements[0] and "ns/nonce" in announcements[0]
    else:  # the real cause and the fix, not a misleading hint
        for words in ("pure-Python fallback", "µs/nonce", "_ds2proxy_pow could not be imported",
                      "python -m pip install .", "C compiler"):
            assert words in announcements[0]
        assert "circular" not in announcements[0]
