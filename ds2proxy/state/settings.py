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
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, unquote_plus, urlsplit

from ..config_values import ConfigError
from ..settings_schema import parse_section, setting

BACKENDS = ("embedded", "redis")
REDIS_URL_ENV = "DS2PROXY_REDIS_URL"
REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(path: str, value: str) -> str:
    """A URL the Redis client takes as meant. Its parser quietly uses db 0
    for a database it cannot read (``/O``, ``/db1``), which would put two
    deployments meant to be apart in one; the messages never quote the URL
    (it may carry a password)."""
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(path, "must be a redis://, rediss:// or unix:// URL")
    try:
        parts.port
    except ValueError:
        raise ConfigError(path, "has a port that is not a number") from None
    dbs = parse_qs(parts.query).get("db", [])
    if parts.scheme != "unix":
        dbs.append(parts.path.replace("/", "") or "0")
    if not all(db.isascii() and db.isdigit() for db in dbs):
        raise ConfigError(path, "names a database that is not a number (…/0, …/1, …)")
    return url


def _key_prefix(path: str, value: str) -> str:
    if not value or len(value) > 64 or not value.isprintable():
        raise ConfigError(path, "must be 1 to 64 printable characters")
    return value


@dataclass(frozen=True, slots=True)
class StateSettings:
    backend: str = setting(
        "embedded", "embedded: leases, tokens, stored responses, health, usage and limits "
        "live in this process and its state file (no server to run); redis: in one Redis "
        "that several instances share.", choices=BACKENDS, hot=False)
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0", "The Redis of state.backend redis; "
        f"{REDIS_URL_ENV} in the environment overrides it (a password in the URL is masked "
        "in reads and logs).", check=_redis_url, hot=False)
    key_prefix: str = setting(
        "ds2proxy:", "Prefix of every Redis key (several gateways may share one Redis).",
        check=_key_prefix, hot=False)
    lease_ttl_seconds: int = setting(
        30, "A lease an instance stops renewing (it died) is reclaimed after this long.",
        min=2, max=300, hot=False)

    @property
    def shared(self) -> bool:
        return self.backend == "redis"

    def __repr__(self) -> str:  # the URL may carry a password
        return f"StateSettings(backend={self.backend!r}, key_prefix={self.key_prefix!r})"


def with_env_url(settings: StateSettings, env: Mapping[str, str] | None = None
                 ) -> StateSettings:
    """``settings`` with ``DS2PROXY_REDIS_URL`` taking precedence."""
    env = os.environ if env is None else env
    url = (env.get(REDIS_URL_ENV) or "").strip()
    if not url:
        return settings
    return replace(settings, redis_url=_redis_url(REDIS_URL_ENV, url))


def parse_state(data: dict, env: Mapping[str, str] | None = None) -> StateSettings:
    """The ``state`` section, with ``DS2PROXY_REDIS_URL`` taking precedence."""
    return with_env_url(parse_section(StateSettings, data.get("state"), "state."), env)


# Query parameters that carry a credential (redis-py reads ``?password=``).
SECRET_QUERY_NAMES = frozenset({
    "password", "passwd", "pass", "pwd", "token", "access_token", "refresh_token", "auth",
    "auth_token", "key", "api_key", "apikey", "api-key", "secret", "client_secret", "sig",
    "signature"})


def _masked_query(query: str) -> str:
    """``query`` with the value of every credential-named parameter replaced by ``…``."""
    pairs = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        secret = sep and value and unquote_plus(name).strip().lower() in SECRET_QUERY_NAMES
        pairs.append(f"{name}=…" if secret else pair)
    return "&".join(pairs)


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``…`` (for logs and admin reads):
    the one in the user part and any credential-named query parameter
    (``?password=``, which the client takes too; ``?token=``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    location, qsep, query = rest.partition("?")
    query, hsep, fragment = query.partition("#")
    netloc, slash, path = location.partition("/")
    return (f"{scheme}://{_masked_netloc(netloc)}{slash}{path}"
            f"{qsep}{_masked_query(query)}{hsep}{fragment}")


def _masked_netloc(netloc: str) -> str:
    if "@" not in netloc:
        return netloc
    user, _, host = netloc.rpartition("@")
    name, sep, _ = user.partition(":")
    shown = f"{name}:…" if sep else name and "…"
    return f"{shown}@{host}"

