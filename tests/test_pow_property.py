"""The compiled solver agrees with the pure-Python reference on random inputs,
on its multi-lane search (four nonces at a time where the CPU has AVX2) and on
its portable single-lane one."""

from __future__ import annotations

import platform
import random
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ds2proxy.pow import backend, reference

pytestmark = pytest.mark.skipif(backend.NATIVE is None, reason="compiled module not built")
native = backend.NATIVE
SEARCHES = {"best": native.search, "portable": native.search_portable} if native else {}

RATE = reference.RATE

# Prefixes: any length up to two blocks, with extra weight just below each
# block edge so the nonce's digits or the padding straddle it.
prefixes = st.one_of(
    st.integers(0, 2 * RATE + 20),
    st.integers(RATE - 21, RATE),
    st.integers(2 * RATE - 21, 2 * RATE),
).flatmap(lambda n: st.binary(min_size=n, max_size=n))
# Starts: anywhere, or just below a power of ten so the digit count grows mid-range.
starts = st.one_of(
    st.integers(0, 10**15),
    st.integers(1, 18).map(lambda k: 10**k - 4),
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3 * RATE + 10))
@example(b"")
@example(b"a" * (RATE - 1))
@example(b"a" * RATE)
def test_hash_agrees(data: bytes) -> None:
    assert native.deepseek_hash_v1(data) == reference.deepseek_hash_v1(data)


@settings(max_examples=60, deadline=None)
@given(prefix=prefixes, start=starts, offset=st.integers(0, 7), span=st.integers(1, 8))
def test_search_agrees_on_hits(prefix: bytes, start: int, offset: int, span: int) -> None:
    answer = start + offset
    target = reference.deepseek_hash_v1(prefix + str(answer).encode())
    stop = answer + span
    for search in SEARCHES.values():
        assert search(prefix, target, start, stop) == answer
    assert reference.search(prefix, target, start, stop) == answer


@settings(max_examples=30, deadline=None)
@given(prefix=prefixes, target=st.binary(min_size=32, max_size=32),
       start=starts)
def test_search_agrees_on_misses(prefix: bytes, target: bytes, start: int) -> None:
    for search in SEARCHES.values():
        assert search(prefix, target, start, start + 6) == -1
    assert reference.search(prefix, target, start, start + 6) == -1


@pytest.mark.parametrize("length", [RATE - 6, RATE - 5, RATE - 1, RATE])
def test_search_crosses_block_edge_as_digits_grow(length: int) -> None:
    """Nonces 99998..100001 move the message from one padded block to two."""
    prefix = b"e" * length
    answer = 100_001
    target = reference.deepseek_hash_v1(prefix + str(answer).encode())
    for search in SEARCHES.values():
        assert search(prefix, target, 99_998, 100_010) == answer
    assert reference.search(prefix, target, 99_998, 100_010) == answer


@pytest.mark.parametrize("name", ["best", "portable"])
def test_random_challenges_are_solved_alike(name: str) -> None:
    """Answers in every position of a group of four, ranges of any length,
    prefixes around the block edges; a fixed seed keeps it repeatable."""
    rng = random.Random(20261205)
    search = SEARCHES[name]
    for _ in range(400):
        prefix = rng.randbytes(rng.choice([0, 20, 35, RATE - 7, RATE - 1, RATE, 2 * RATE + 3]))
        start = rng.choice([0, 3, 96, 9_995, rng.randrange(10**7), 10**12 - 5])
        answer = start + rng.randrange(0, 23)
        target = native.deepseek_hash_v1(prefix + str(answer).encode())
        assert target == reference.deepseek_hash_v1(prefix + str(answer).encode())
        assert search(prefix, target, start, answer + rng.randrange(1, 9)) == answer
        assert search(prefix, target, answer + 1, answer + 10) == -1


@pytest.mark.parametrize("name", ["best", "portable"])
def test_answer_in_each_position_of_a_group_of_four(name: str) -> None:
    prefix = b"lanes_"
    for answer in range(40, 48):
        target = reference.deepseek_hash_v1(prefix + str(answer).encode())
        assert SEARCHES[name](prefix, target, 40, 60) == answer
        assert SEARCHES[name](prefix, target, answer, answer + 1) == answer


def test_multi_lane_search_is_used_where_the_cpu_has_avx2() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if platform.machine() not in ("x86_64", "AMD64") or not flags:
        pytest.skip("AVX2 detection is checked on x86-64 Linux")
    assert native.LANES == (4 if " avx2" in flags else 1)
