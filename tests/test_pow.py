"""DeepSeekHashV1, the challenge and the header against the spec's known answers."""

from __future__ import annotations

import base64
import json
import time

import pytest

from ds2proxy import pow as pow_api
from ds2proxy.errors import PowError
from ds2proxy.pow import Challenge, backend, reference
from ds2proxy.pow.challenge import DEFAULT_EXPIRE_AT

# spec §5.5, hash rows 1-10: (input, DeepSeekHashV1 hex)
HASH_ROWS = [
    (b"", "e594808bc5b7151ac160c6d39a02e0a8e261ed588578403099e3561dc40c26b3"),
    (b"testsalt_1700000000_42",
     "d4a2ea58c89e40887c933484868380c6f803eaa8dc53a3b9df8e431b921a4f09"),
    (b"testsalt_1700000000_100000",
     "abea2f35796b65486e9be1b36f7878c66cab021e96faa473fdf4decd31f9ba30"),
    (b"abc123salt_1700000000_12345",
     "74b3b7452745b70e85eb32ee7f0a9ec0381d42dd5137b695da915e104fc390e1"),
    (b"salt_1712345678_777",
     "1213599ef296ed8369cb8a39fbd921c4f73d0d9ad9042f585c9f9f132af9eeb7"),
    (b"p" * 123 + b"_1700000000_",
     "52511f20bf224c843277ec07b9306271de59d37b841b69ba1f093ecf453e6f61"),
    (b"q" * 124 + b"_1700000000_",
     "9b12c3a6962115521ce4931357b4966cc494a25a96fa7fca6c3b13f5e12d2c58"),
    (b"s" * 121 + b"_1700000000_123456",
     "bb4506408919e10f779dadb32b3e7438e549371da9722561f04eff7a1c67d8af"),
    (b"x" * 200 + b"_1700000000_7",
     "7862a3711c2c0e1b1825a31c87e8d48ce1f15b10093e16f0a82a3379b62e6465"),
    (b"realisticsalt_1712345678_143999",
     "13e502b85f1f6679745b25cc242d4c4824c155301814c0892085bc7646557fd4"),
]

# spec §5.5, solve rows: (salt, expire_at, difficulty, answer)
SOLVE_ROWS = [
    ("testsalt", 1700000000, 1000, 42),
    ("testsalt", 1700000000, 2000, 500),
    ("abc123salt", 1700000000, 20000, 12345),
    ("salt", 1712345678, 2000, 777),
    ("realisticsalt", 1712345678, 144000, 143999),
]

# spec §5.4
HEADER_EXAMPLE = (
    "eyJhbGdvcml0aG0iOiJEZWVwU2Vla0hhc2hWMSIsImFuc3dlciI6Nzc3LCJjaGFsbGVuZ2UiOiIxMjEzNTk5ZWYy"
    "OTZlZDgzNjljYjhhMzlmYmQ5MjFjNGY3M2QwZDlhZDkwNDJmNTg1YzlmOWYxMzJhZjllZWI3Iiwic2FsdCI6InNh"
    "bHQiLCJzaWduYXR1cmUiOiJzaWciLCJ0YXJnZXRfcGF0aCI6Ii9hcGkvdjAvY2hhdC9jb21wbGV0aW9uIn0="
)

class PortableNative:
    """The compiled module on its single-lane path, whatever the CPU offers."""

    deepseek_hash_v1 = staticmethod(backend.NATIVE.deepseek_hash_v1) if backend.NATIVE else None
    search = staticmethod(backend.NATIVE.search_portable) if backend.NATIVE else None


IMPLEMENTATIONS = [pytest.param(reference, id="python")]
if backend.NATIVE:
    IMPLEMENTATIONS += [pytest.param(backend.NATIVE, id="native"),
                        pytest.param(PortableNative, id="native-portable")]

needs_native = pytest.mark.skipif(backend.NATIVE is None, reason="compiled module not built")


def challenge_for(salt: str, expire_at: int, difficulty: int, answer: int, *,
                  algorithm: str = "DeepSeekHashV1", signature: str = "sig") -> Challenge:
    target = reference.deepseek_hash_v1(f"{salt}_{expire_at}_{answer}".encode())
    return Challenge(algorithm=algorithm, challenge=target.hex(), salt=salt,
                     signature=signature, difficulty=difficulty, expire_at=expire_at,
                     expire_after=300000, target_path="/api/v0/chat/completion")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(("data", "digest"), HASH_ROWS, ids=[str(len(r[0])) for r in HASH_ROWS])
def test_hash_matches_spec_rows(impl, data: bytes, digest: str) -> None:
    assert impl.deepseek_hash_v1(data).hex() == digest


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(("salt", "expire_at", "difficulty", "answer"), SOLVE_ROWS)
def test_search_finds_spec_answers(impl, salt: str, expire_at: int, difficulty: int,
                                   answer: int) -> None:
    ch = challenge_for(salt, expire_at, difficulty, answer)
    # The pure-Python search is slow, so it starts a little below the answer;
    # the compiled one scans the whole range as a solve does.
    start = max(0, answer - 300) if impl is reference else 0
    assert impl.search(ch.prefix, ch.target, start, difficulty) == answer


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_search_reports_miss_and_empty_range(impl) -> None:
    target = bytes.fromhex(HASH_ROWS[1][1])  # testsalt ... 42
    assert impl.search(b"testsalt_1700000000_", target, 43, 60) == -1
    assert impl.search(b"testsalt_1700000000_", target, 42, 42) == -1


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(("target", "start", "stop"), [
    (bytes(31), 0, 10), (bytes(32), -1, 10), (bytes(32), 0, -5)])
def test_search_rejects_bad_arguments(impl, target: bytes, start: int, stop: int) -> None:
    with pytest.raises(ValueError):
        impl.search(b"p_", target, start, stop)


def test_public_api_uses_the_best_implementation() -> None:
    assert pow_api.IMPLEMENTATION == ("native" if backend.NATIVE else "python")
    assert pow_api.deepseek_hash_v1(HASH_ROWS[4][0]).hex() == HASH_ROWS[4][1]


@pytest.mark.parametrize(("salt", "expire_at", "difficulty", "answer"), SOLVE_ROWS)
async def test_solve_finds_spec_answers(salt: str, expire_at: int, difficulty: int,
                                        answer: int) -> None:
    ch = challenge_for(salt, expire_at, difficulty, answer)
    assert await pow_api.solve(ch, check_expiry=False) == answer


async def test_solve_refuses_expired_challenge() -> None:
    ch = challenge_for("salt", int(time.time() * 1000) - 1, 2000, 777)
    with pytest.raises(PowError, match="expired") as info:
        await pow_api.solve(ch)
    assert info.value.retryable


async def test_solve_accepts_fresh_challenge() -> None:
    ch = challenge_for("salt", int(time.time() * 1000) + 60_000, 2000, 777)
    assert await pow_api.solve(ch) == 777


async def test_solve_refuses_unknown_algorithm() -> None:
    ch = challenge_for("salt", 1712345678, 2000, 777, algorithm="DeepSeekHashV2")
    with pytest.raises(PowError, match="unsupported PoW algorithm 'DeepSeekHashV2'") as info:
        await pow_api.solve(ch, check_expiry=False)
    assert not info.value.retryable


async def test_solve_reports_answer_out_of_range() -> None:
    ch = challenge_for("salt", 1712345678, 700, 777)
    with pytest.raises(PowError, match=r"no PoW answer in \[0, 700\)"):
        await pow_api.solve(ch, check_expiry=False)


SPEC_CHALLENGE = {
    "algorithm": "DeepSeekHashV1",
    "challenge": "7ffc9d19b6eed96a6fca68f8ffe30ee61035d4959e4180f187bf85b356016a96",
    "salt": "3bde54628ea8413fee87",
    "signature": "ce4678cf7a1290c2a7ac88c4195a5b8497e5fc4b0e8044e804f5a6f3af6fe462",
    "difficulty": 144000,
    "expire_at": 1775380966945,
    "expire_after": 300000,
    "target_path": "/api/v0/chat/completion",
}


def test_challenge_reads_upstream_object() -> None:
    ch = Challenge.from_dict(SPEC_CHALLENGE)
    assert {name: getattr(ch, name) for name in SPEC_CHALLENGE} == SPEC_CHALLENGE
    assert ch.prefix == b"3bde54628ea8413fee87_1775380966945_"
    assert ch.target == bytes.fromhex(SPEC_CHALLENGE["challenge"])


def test_challenge_applies_spec_defaults() -> None:
    data = {k: v for k, v in SPEC_CHALLENGE.items()
            if k not in ("difficulty", "expire_at", "expire_after")}
    ch = Challenge.from_dict(data)
    assert (ch.difficulty, ch.expire_at, ch.expire_after) == (144000, 1680000000, 300000)


@pytest.mark.parametrize(("change", "complaint"), [
    ({"salt": None}, "'salt' must be a string"),
    ({"signature": 5}, "'signature' must be a string"),
    ({"difficulty": "144000"}, "'difficulty' must be an integer"),
    ({"expire_at": True}, "'expire_at' must be an integer"),
    ({"difficulty": -1}, "negative 'difficulty'"),
    ({"challenge": "abc"}, "not 64 hex digits"),
    ({"challenge": "z" * 64}, "not 64 hex digits"),
])
def test_challenge_rejects_malformed_object(change: dict, complaint: str) -> None:
    with pytest.raises(PowError, match=complaint):
        Challenge.from_dict({**SPEC_CHALLENGE, **change})


def test_challenge_rejects_non_object() -> None:
    with pytest.raises(PowError, match="not an object"):
        Challenge.from_dict(["challenge"])  # type: ignore[arg-type]


async def test_a_challenge_without_expire_at_is_solved_not_called_expired() -> None:
    # The spec's default (1680000000) fills the prefix; it is no deadline:
    # taken for one (a date in 1970) every such challenge was "expired".
    answer = 777
    target = reference.deepseek_hash_v1(f"salt_{DEFAULT_EXPIRE_AT}_{answer}".encode())
    data = {"algorithm": "DeepSeekHashV1", "challenge": target.hex(), "salt": "salt",
            "signature": "sig", "difficulty": 2000, "target_path": "/api/v0/chat/completion"}
    ch = Challenge.from_dict(data)
    assert not ch.expired()
    assert await pow_api.solve(ch) == answer
    assert Challenge.from_dict({**data, "expire_at": 1000}).expired()


def test_challenge_expiry_is_in_milliseconds() -> None:
    ch = Challenge.from_dict(SPEC_CHALLENGE)
    assert not ch.expired(now_ms=SPEC_CHALLENGE["expire_at"] - 1)
    assert ch.expired(now_ms=SPEC_CHALLENGE["expire_at"])


def test_header_reproduces_spec_example() -> None:
    ch = challenge_for("salt", 1712345678, 2000, 777)
    assert pow_api.encode_header(ch, 777) == HEADER_EXAMPLE


def test_header_round_trips_exactly_six_keys() -> None:
    ch = Challenge.from_dict(SPEC_CHALLENGE)
    decoded = pow_api.decode_header(pow_api.encode_header(ch, 143999))
    assert decoded == {
        "algorithm": ch.algorithm, "challenge": ch.challenge, "salt": ch.salt,
        "answer": 143999, "signature": ch.signature, "target_path": ch.target_path,
    }


def _b64(payload: object) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("value", [
    "not base64!",
    "eyJ",
    _b64(b"\xff\xfe"),
    _b64(b"{not json"),
    _b64([1, 2]),
    _b64({"algorithm": "DeepSeekHashV1"}),
    _b64({**json.loads(base64.b64decode(HEADER_EXAMPLE)), "answer": "777"}),
    _b64({**json.loads(base64.b64decode(HEADER_EXAMPLE)), "salt": 1}),
])
def test_header_decode_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError):
        pow_api.decode_header(value)
