"""Which config members hold secrets, by their names: shared by the admin's
masked reads and by what plugins' setting checks may say back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# These names, and any name whose last word is one of SECRET_WORDS (a plugin
# names its own: client_secret, authToken, webhook-password, private_key …).
SECRET_NAMES = frozenset({"password", "token", "api_key", "apikey", "secret", "key",
                          "access_token", "refresh_token", "jwt_secret", "password_hash"})
SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "secret", "token", "key",
                          "apikey", "credential", "credentials", "cookie", "authorization",
                          "passwords", "secrets", "keys", "apikeys"})
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
REDACTED = "[redacted]"


def is_secret_name(name: str) -> bool:
    """Does a member called ``name`` hold a secret?"""
    words = _WORD_START.sub("_", name).lower().replace("-", "_").split("_")
    return name.lower() in SECRET_NAMES or words[-1] in SECRET_WORDS


def secret_values(tree: Any) -> Iterator[str]:
    """Every string held by a secret-named member anywhere in ``tree``, at
    any depth beneath it (``"secrets": {"github": …}`` holds one too)."""
    if isinstance(tree, dict):
        for name, value in tree.items():
            if is_secret_name(str(name)):
                yield from _strings(value)
            else:
                yield from secret_values(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from secret_values(item)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, (dict, list)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


def without_secrets(text: str, tree: Any) -> str:
    """``text`` with every secret of ``tree`` it quotes replaced by [redacted]."""
    for secret in sorted(set(secret_values(tree)), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
