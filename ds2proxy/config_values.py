"""Typed reads of config fields: each failure is a ConfigError naming the
field, so the admin and the CLI can point at what to fix."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

PROXY_SCHEMES = ("http", "socks5", "socks4")


class ConfigError(ValueError):
    """A config value is invalid; the message names the field."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"config field '{field_path}': {problem}")
        self.field = field_path


def _get(data: dict, path: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """Read ``a.b`` from ``data`` checking its type; absent or null → default."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return default
        node = node[part]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool not in kinds and isinstance(node, bool):
        raise ConfigError(path, f"expected {_kind_name(kinds)}, got a boolean")
    if not isinstance(node, kinds):
        raise ConfigError(path, f"expected {_kind_name(kinds)}, got {type(node).__name__}")
    return node


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
             dict: "an object", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _int(data: dict, path: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
    value = _get(data, path, int, default)
    if value is None:
        return None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ConfigError(path, f"must be {bound}, got {value}")
    return value


def _num(data: dict, path: str, default: float, lo: float) -> float:
    value = float(_get(data, path, (int, float), default))
    if value < lo:
        raise ConfigError(path, f"must be at least {lo}, got {value}")
    return value


def _choice(data: dict, path: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _get(data, path, str, default)
    if value not in allowed:
        raise ConfigError(path, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


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
