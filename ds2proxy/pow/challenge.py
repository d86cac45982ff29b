"""The PoW challenge as the upstream hands it out, and what a solver needs from it."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from ..errors import PowError

ALGORITHM = "DeepSeekHashV1"
# Defaults DS2API applies when the upstream leaves a field out.
DEFAULT_DIFFICULTY = 144000
DEFAULT_EXPIRE_AT = 1680000000
DEFAULT_EXPIRE_AFTER = 300000

_TEXT_FIELDS = ("algorithm", "challenge", "salt", "signature", "target_path")
_INT_FIELDS = {
    "difficulty": DEFAULT_DIFFICULTY,
    "expire_at": DEFAULT_EXPIRE_AT,
    "expire_after": DEFAULT_EXPIRE_AFTER,
}
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``create_pow_challenge`` answer; ``expire_at`` is epoch milliseconds."""

    algorithm: str
    challenge: str
    salt: str
    signature: str
    difficulty: int
    expire_at: int
    expire_after: int
    target_path: str
    # False when the upstream named no expire_at: the default then only
    # fills the prefix (as DS2API does) and is no deadline.
    dated: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Challenge:
        """Read the upstream's JSON object; a malformed one is a ``PowError``."""
        if not isinstance(data, dict):
            raise PowError("malformed PoW challenge: not an object")
        fields: dict[str, Any] = {}
        for name in _TEXT_FIELDS:
            fields[name] = _text(data, name)
        for name, default in _INT_FIELDS.items():
            fields[name] = _integer(data, name, default)
        if not _HEX_DIGEST.fullmatch(fields["challenge"]):
            raise PowError("malformed PoW challenge: 'challenge' is not 64 hex digits")
        if fields["difficulty"] < 0:
            raise PowError("malformed PoW challenge: negative 'difficulty'")
        return cls(**fields, dated=data.get("expire_at") is not None)

    @property
    def prefix(self) -> bytes:
        """The bytes every candidate nonce's decimal text is appended to."""
        return f"{self.salt}_{self.expire_at}_".encode()

    @property
    def target(self) -> bytes:
        """The 32-byte digest to hit."""
        try:
            digest = bytes.fromhex(self.challenge)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise PowError("malformed PoW challenge: 'challenge' is not 64 hex digits")
        return digest

    def expired(self, now_ms: int | None = None) -> bool:
        """True once ``expire_at`` has passed (answers are refused after that);
        never for a challenge the upstream gave no expiry."""
        if not self.dated:
            return False
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        return now_ms >= self.expire_at


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise PowError(f"malformed PoW challenge: '{name}' must be a string")
    return value


def _integer(data: dict[str, Any], name: str, default: int) -> int:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise PowError(f"malformed PoW challenge: '{name}' must be an integer")
    return value
