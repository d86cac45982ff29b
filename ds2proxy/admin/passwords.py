"""Admin password hashing: salted scrypt, always run off the event loop (in
two threads of its own).

The stored form is ``scrypt$n$r$p$<salt b64>$<hash b64>`` so the cost can be
raised later without breaking hashes already in a config file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import unicodedata
from concurrent.futures import ThreadPoolExecutor

_N, _R, _P = 1 << 14, 8, 1
_MAXMEM = 64 * 1024 * 1024
MIN_LENGTH = 8


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be the admin password, or None. It is also
    sent as ``Authorization: Bearer <password>``: a header trims what
    surrounds the value and cannot carry line breaks, so a password with
    either could open the login form only."""
    if len(password) < MIN_LENGTH:
        return f"the new password needs at least {MIN_LENGTH} characters"
    if password != password.strip():
        return "the new password must not begin or end with a space"
    if any(unicodedata.category(c) == "Cc" for c in password):
        return "the new password must not contain control characters (tabs, line breaks)"
    return None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)


def hash_password_sync(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password_sync(password: str, stored: str) -> bool:
    """True when ``password`` matches; a malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(got, base64.b64decode(digest))
    except ValueError:
        return False


# Threads of their own: scrypt takes tens of milliseconds and 16 MB per check,
# and anyone may send guesses. In the default executor they would queue the
# server's other threaded work (token counts, large bodies) behind them.
_CHECKS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ds2proxy-password")


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_CHECKS, hash_password_sync,
                                                            password)


async def verify_password(password: str, stored: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_CHECKS, verify_password_sync,
                                                            password, stored)
