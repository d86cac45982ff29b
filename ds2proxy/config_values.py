"""Typed reads of config values: each failure is a ConfigError naming the
field, so the admin and the CLI can point at what to fix."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

PROXY_SCHEMES = ("http", "socks5", "socks5h", "socks4")


class ConfigError(ValueError):
    """A config value is invalid; the message names the field."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"config field '{field_path}': {problem}")
        self.field = field_path


def read_value(path: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    """``value`` (present, not null) checked to be of ``kind``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool not in kinds and isinstance(value, bool):
        raise ConfigError(path, f"expected {_kind_name(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise ConfigError(path, f"expected {_kind_name(kinds)}, got {type(value).__name__}")
    return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
             dict: "an object", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def stripped(path: str, value: str) -> str:
    """A check that trims surrounding blanks (pasted tokens and paths)."""
    return value.strip()


def check_proxy_url(path: str, url: str) -> None:
    """An outbound proxy: ``scheme://[user:pass@]host:port`` with a known scheme."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(path, "is not a valid proxy URL") from None
    if parts.scheme not in PROXY_SCHEMES:
        raise ConfigError(path, f"scheme must be one of {', '.join(PROXY_SCHEMES)}")
    if not parts.hostname or port is None:
        raise ConfigError(path, "needs a host and a port, e.g. socks5://127.0.0.1:1080")
