"""DeepSeekHashV1 in pure Python: the reference and the fallback solver.

DeepSeekHashV1 is SHA3-256 whose Keccak-f[1600] permutation skips round 0
(rounds 1..23 only). Slow (about a millisecond per nonce), but obviously
correct; the compiled solver is tested against it.
"""

from __future__ import annotations

RATE = 136
_MASK = (1 << 64) - 1

_RC = [
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
]

# Rotation offsets r[x][y] for lane (x, y) at index x + 5y.
_ROT = [
    [0, 36, 3, 41, 18],
    [1, 44, 10, 45, 2],
    [62, 6, 43, 15, 61],
    [28, 55, 25, 21, 56],
    [27, 20, 39, 8, 14],
]


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (64 - n))) & _MASK if n else v


def permute(a: list[int]) -> None:
    """Keccak-f[1600] with rounds 1..23, in place on 25 lanes."""
    for rnd in range(1, 24):
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ _rotl(c[(x + 1) % 5], 1) for x in range(5)]
        for i in range(25):
            a[i] ^= d[i % 5]
        b = [0] * 25
        for x in range(5):
            for y in range(5):
                b[y + 5 * ((2 * x + 3 * y) % 5)] = _rotl(a[x + 5 * y], _ROT[x][y])
        for y in range(0, 25, 5):
            row = b[y:y + 5]
            for x in range(5):
                a[y + x] = row[x] ^ ((~row[(x + 1) % 5]) & row[(x + 2) % 5])
        a[0] ^= _RC[rnd]


def _absorb(state: list[int], block: bytes) -> None:
    for i in range(RATE // 8):
        state[i] ^= int.from_bytes(block[8 * i:8 * i + 8], "little")
    permute(state)


def _pad(data: bytes) -> bytes:
    padded = bytearray(data)
    padded.append(0x06)
    while len(padded) % RATE:
        padded.append(0)
    padded[-1] |= 0x80
    return bytes(padded)


def deepseek_hash_v1(data: bytes) -> bytes:
    """Return the 32-byte DeepSeekHashV1 digest of ``data``."""
    state = [0] * 25
    padded = _pad(data)
    for off in range(0, len(padded), RATE):
        _absorb(state, padded[off:off + RATE])
    return b"".join(state[i].to_bytes(8, "little") for i in range(4))


def search(prefix: bytes, target: bytes, start: int, stop: int) -> int:
    """Return the first nonce in ``[start, stop)`` whose hash is ``target``, or -1.

    Whole 136-byte blocks of the prefix are absorbed once and reused. Nonces
    are unsigned decimal text, so negative bounds are refused.
    """
    if len(target) != 32:
        raise ValueError("target must be 32 bytes")
    if start < 0 or stop < 0:
        raise ValueError("start and stop must be >= 0")
    state = [0] * 25
    full = len(prefix) - len(prefix) % RATE
    for off in range(0, full, RATE):
        _absorb(state, prefix[off:off + RATE])
    tail = prefix[full:]
    for nonce in range(start, stop):
        s = state.copy()
        padded = _pad(tail + str(nonce).encode())
        for off in range(0, len(padded), RATE):
            _absorb(s, padded[off:off + RATE])
        if b"".join(s[i].to_bytes(8, "little") for i in range(4)) == target:
            return nonce
    return -1
