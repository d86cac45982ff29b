"""The compiled solver agrees with the pure-Python reference on random inputs."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ds2proxy.pow import backend, reference

pytestmark = pytest.mark.skipif(backend.NATIVE is None, reason="compiled module not built")
native = backend.NATIVE

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
    assert native.search(prefix, target, start, stop) == answer
    assert reference.search(prefix, target, start, stop) == answer


@settings(max_examples=30, deadline=None)
@given(prefix=prefixes, target=st.binary(min_size=32, max_size=32),
       start=starts)
def test_search_agrees_on_misses(prefix: bytes, target: bytes, start: int) -> None:
    assert native.search(prefix, target, start, start + 6) == -1
    assert reference.search(prefix, target, start, start + 6) == -1


@pytest.mark.parametrize("length", [RATE - 6, RATE - 5, RATE - 1, RATE])
def test_search_crosses_block_edge_as_digits_grow(length: int) -> None:
    """Nonces 99998..100001 move the message from one padded block to two."""
    prefix = b"e" * length
    answer = 100_001
    target = reference.deepseek_hash_v1(prefix + str(answer).encode())
    assert native.search(prefix, target, 99_998, 100_010) == answer
    assert reference.search(prefix, target, 99_998, 100_010) == answer
