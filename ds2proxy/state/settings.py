"""The ``state`` config section: where shared runtime state lives.

``embedded`` (the default) keeps leases, tokens and stored responses in this
process, with no server to run. ``redis`` puts them in one Redis so several
instances behind a load balancer act as one gateway. ``DS2PROXY_REDIS_URL``
in the environment overrides ``state.redis_url`` (a password in the URL then
never has to sit in the config file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ..config_values import ConfigError, _choice, _get, _int

BACKENDS = ("embedded", "redis")
REDIS_URL_ENV = "DS2PROXY_REDIS_URL"
REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class StateSettings:
    backend: str = "embedded"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "ds2proxy:"
    lease_ttl_seconds: int = 30

    @property
    def shared(self) -> bool:
        return self.backend == "redis"

    def __repr__(self) -> str:  # the URL may carry a password
        return f"StateSettings(backend={self.backend!r}, key_prefix={self.key_prefix!r})"


def parse_state(data: dict, env: Mapping[str, str] | None = None) -> StateSettings:
    """The ``state`` section, with ``DS2PROXY_REDIS_URL`` taking precedence."""
    d = StateSettings()
    env = os.environ if env is None else env
    url = (env.get(REDIS_URL_ENV) or "").strip() or _get(
        data, "state.redis_url", str, d.redis_url).strip()
    if urlsplit(url).scheme not in REDIS_SCHEMES:
        raise ConfigError("state.redis_url",
                          "must be a redis://, rediss:// or unix:// URL")
    prefix = _get(data, "state.key_prefix", str, d.key_prefix)
    if not prefix or len(prefix) > 64 or not prefix.isprintable():
        raise ConfigError("state.key_prefix", "must be 1 to 64 printable characters")
    return StateSettings(
        backend=_choice(data, "state.backend", d.backend, BACKENDS),
        redis_url=url,
        key_prefix=prefix,
        lease_ttl_seconds=_int(data, "state.lease_ttl_seconds", d.lease_ttl_seconds, 2, 300),
    )


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``…`` (for logs and admin reads)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name, sep, _ = user.partition(":")
    shown = f"{name}:…" if sep else name and "…"
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))
