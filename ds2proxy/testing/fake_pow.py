"""Real PoW challenges for the fake upstream, and the check of their answers.

A challenge is the DeepSeekHashV1 digest of ``salt_expireAt_answer`` for a
random answer below ``difficulty``; its signature is an HMAC over challenge,
salt, expiry and target path, so a forged or edited header is refused. The
header carries no expiry, so issued challenges are remembered by digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from ..pow.reference import deepseek_hash_v1

ALGORITHM = "DeepSeekHashV1"
EXPIRE_AFTER_MS = 300_000
MISSING_HEADER = (40300, "MISSING_HEADER")
INVALID_POW = (40301, "INVALID_POW_RESPONSE")
_FORGET_AFTER_MS = 3_600_000


def decode_pow_header(value: str) -> dict[str, Any] | None:
    """The JSON object inside an ``x-ds-pow-response`` header, or None if undecodable."""
    try:
        payload = orjson.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


class PowIssuer:
    """Issues challenges and verifies ``x-ds-pow-response`` headers against them."""

    def __init__(self, difficulty: int, *, secret: bytes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.difficulty = difficulty
        self._secret = secret or secrets.token_bytes(32)
        self._clock = clock
        self._issued: dict[str, int] = {}  # challenge digest -> expire_at (ms)
        self._used: set[str] = set()
        # What challenges name as their algorithm (tests change it to model
        # an upstream that moved on to a hash this client does not know).
        self.algorithm = ALGORITHM

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def issue(self, target_path: str) -> dict[str, Any]:
        """A fresh challenge object, as ``create_pow_challenge`` returns it."""
        self._forget_old()
        salt = secrets.token_hex(10)
        expire_at = self._now_ms() + EXPIRE_AFTER_MS
        answer = secrets.randbelow(max(1, self.difficulty))
        digest = deepseek_hash_v1(f"{salt}_{expire_at}_{answer}".encode()).hex()
        self._issued[digest] = expire_at
        return {"algorithm": self.algorithm, "challenge": digest, "salt": salt,
                "signature": self._sign(digest, salt, expire_at, target_path),
                "difficulty": self.difficulty, "expire_at": expire_at,
                "expire_after": EXPIRE_AFTER_MS, "target_path": target_path}

    def check(self, header: str | None, target_path: str, *, consume: bool = True,
              check_expiry: bool = True) -> tuple[int, str] | None:
        """None when the header proves a challenge for ``target_path``, else the error.

        ``consume`` refuses a second use of the same answer; a continue call
        passes ``consume=False, check_expiry=False`` because it legitimately
        reuses its completion's header, even after the five minutes.
        """
        payload = decode_pow_header(header) if header else None
        if payload is None:
            return MISSING_HEADER
        digest = payload.get("challenge")
        expire_at = self._issued.get(digest) if isinstance(digest, str) else None
        if expire_at is None or not self._valid(payload, digest, expire_at, target_path):
            return INVALID_POW
        if (check_expiry and self._now_ms() > expire_at) or (consume and digest in self._used):
            return INVALID_POW
        if consume:
            self._used.add(digest)
        return None

    def _valid(self, payload: dict, digest: str, expire_at: int, target_path: str) -> bool:
        salt, answer = payload.get("salt"), payload.get("answer")
        if (payload.get("algorithm") != ALGORITHM or payload.get("target_path") != target_path
                or not isinstance(salt, str) or not isinstance(answer, int)
                or isinstance(answer, bool) or not 0 <= answer < max(1, self.difficulty)):
            return False
        expected = self._sign(digest, salt, expire_at, target_path)
        if not hmac.compare_digest(str(payload.get("signature")), expected):
            return False
        return deepseek_hash_v1(f"{salt}_{expire_at}_{answer}".encode()).hex() == digest

    def _sign(self, digest: str, salt: str, expire_at: int, target_path: str) -> str:
        msg = f"{digest}|{salt}|{expire_at}|{target_path}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def _forget_old(self) -> None:
        horizon = self._now_ms() - _FORGET_AFTER_MS
        for digest in [d for d, exp in self._issued.items() if exp < horizon]:
            del self._issued[digest]
            self._used.discard(digest)
