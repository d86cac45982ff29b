"""The ``providers`` list and the ``model_routes`` map, parsed and checked.

A provider is an OpenAI-compatible API (the official DeepSeek API, a local
runtime, a hosted vendor) that serves some model names. ``model_routes``
gives a requested name (or glob) an ordered list of targets: ``"pool"``
(the web-chat accounts) or ``"<provider>:<model>"``. Every failure is a
:class:`ConfigError` naming the JSON path at fault (``providers[1].base_url``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from ..config_values import ConfigError

PROVIDER_FIELDS = ("name", "kind", "base_url", "api_key", "models", "headers",
                   "timeout_seconds", "max_inflight", "reasoning", "tools",
                   "embeddings_batch_size", "max_tokens_field")
KINDS = ("openai",)
REASONING_MODES = ("field", "think_tags", "none")
# The name a provider takes the output limit under: OpenAI's reasoning models
# refuse ``max_tokens`` for ``max_completion_tokens``; "auto" sends
# ``max_tokens`` and switches when the provider refuses it (see turn.py).
LIMIT_FIELD_MODES = ("auto", "max_tokens", "max_completion_tokens")
POOL = "pool"
_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
_URL = re.compile(r"^https?://[^/\s]+\S*$")

Reasoning = Literal["field", "think_tags", "none"]


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One OpenAI-compatible provider. ``api_key`` and ``headers`` stay out
    of reprs: a logged config must not carry them."""

    name: str
    base_url: str
    api_key: str = field(default="", repr=False)
    models: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    kind: str = "openai"
    timeout_seconds: float = 120.0
    max_inflight: int = 8
    reasoning: Reasoning = "field"
    tools: bool = True
    embeddings_batch_size: int = 64
    max_tokens_field: str = "auto"

    def serves(self, model: str) -> bool:
        """Does a name or glob of ``models`` match ``model`` (case-insensitive)?"""
        name = model.lower()
        return any(fnmatchcase(name, pattern.lower()) for pattern in self.models)

    def listed_models(self) -> tuple[str, ...]:
        """The literal names of ``models`` (globs cannot be listed)."""
        return tuple(m for m in self.models if not is_glob(m))


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """One target of a route: the pool, or ``model`` at ``provider``."""

    provider: str | None = None  # None: the web-chat account pool
    model: str = ""

    @property
    def is_pool(self) -> bool:
        return self.provider is None

    @property
    def label(self) -> str:
        """How the target is named in records and headers."""
        return POOL if self.provider is None else f"{self.provider}:{self.model}"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A requested name or glob and its targets, tried in order."""

    pattern: str
    targets: tuple[RouteTarget, ...]

    def matches(self, model: str) -> bool:
        return fnmatchcase(model.lower(), self.pattern.lower())


def is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def parse_providers(data: dict[str, Any]) -> tuple[ProviderSettings, ...]:
    """The ``providers`` list; names are unique."""
    items = data.get("providers")
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError("providers", "expected a list")
    found: list[ProviderSettings] = []
    for i, item in enumerate(items):
        provider = _provider(item, f"providers[{i}]")
        if any(p.name == provider.name for p in found):
            raise ConfigError(f"providers[{i}].name", f"duplicate provider {provider.name!r}")
        found.append(provider)
    return tuple(found)


def _provider(item: Any, where: str) -> ProviderSettings:
    if not isinstance(item, dict):
        raise ConfigError(where, "expected an object")
    name = _text(item, where, "name", required=True)
    if not _NAME.match(name):
        raise ConfigError(f"{where}.name", "must be 1-64 of a-z, 0-9, '_' or '-', "
                                           f"got {name!r}")
    d = ProviderSettings(name="", base_url="")
    return ProviderSettings(
        name=name,
        base_url=_base_url(item, where),
        kind=_one_of(item, where, "kind", d.kind, KINDS),
        api_key=_api_key(item, where),
        models=_models(item, where),
        headers=_headers(item, where),
        timeout_seconds=_number(item, where, "timeout_seconds", d.timeout_seconds, 0.1),
        max_inflight=_integer(item, where, "max_inflight", d.max_inflight, 1, 100000),
        reasoning=_one_of(item, where, "reasoning", d.reasoning, REASONING_MODES),
        tools=_flag(item, where, "tools", d.tools),
        embeddings_batch_size=_integer(item, where, "embeddings_batch_size",
                                       d.embeddings_batch_size, 1, 100000),
        max_tokens_field=_one_of(item, where, "max_tokens_field", d.max_tokens_field,
                                 LIMIT_FIELD_MODES),
    )


def _base_url(item: dict, where: str) -> str:
    """Never quoted back, and never with credentials in it: it is shown in
    admin reads and logged as it is (the secret goes in api_key or headers)."""
    base_url = _text(item, where, "base_url", required=True).rstrip("/")
    if not _URL.match(base_url):
        raise ConfigError(f"{where}.base_url", "must be an http(s) URL such as "
                                               "https://api.deepseek.com/v1")
    if "@" in base_url.split("/")[2]:
        raise ConfigError(f"{where}.base_url", "must not carry a user or password: put the "
                                               "credential in api_key or headers")
    return base_url


def _api_key(item: dict, where: str) -> str:
    """It travels in an Authorization header, where whitespace cannot go."""
    key = _text(item, where, "api_key")
    if not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigError(f"{where}.api_key", "must not contain spaces or control characters")
    return key


def parse_model_routes(path: str, routes: Any) -> tuple[ModelRoute, ...]:
    """``model_routes`` in document order, each target the pool or
    ``<provider>:<model>`` (that the provider exists is checked by
    :func:`check_model_routes` once ``providers`` is read)."""
    if routes is None:
        return ()
    if not isinstance(routes, dict):
        raise ConfigError(path, "expected an object of name → list of targets")
    parsed: list[ModelRoute] = []
    for pattern, targets in routes.items():
        if str(pattern).startswith("_"):
            continue  # a comment, as elsewhere in the document
        where = f"{path}.{pattern}"
        if not str(pattern).strip():
            raise ConfigError(where, "the model name must not be empty")
        if not isinstance(targets, list) or not targets:
            raise ConfigError(where, "expected a non-empty list of targets")
        parsed.append(ModelRoute(pattern.strip(), tuple(
            _target(t, f"{where}[{i}]") for i, t in enumerate(targets))))
    return tuple(parsed)


def check_model_routes(routes: tuple[ModelRoute, ...],
                       providers: tuple[ProviderSettings, ...]) -> None:
    """Every provider a route names is configured."""
    names = {p.name for p in providers}
    for route in routes:
        for i, target in enumerate(route.targets):
            if target.provider is not None and target.provider not in names:
                known = ", ".join(sorted(names)) or "none configured"
                raise ConfigError(f"model_routes.{route.pattern}[{i}]",
                                  f"unknown provider {target.provider!r} (providers: {known})")


def _target(value: Any, where: str) -> RouteTarget:
    if not isinstance(value, str):
        raise ConfigError(where, "expected \"pool\" or \"<provider>:<model>\"")
    if value.strip() == POOL:
        return RouteTarget()
    provider, sep, model = value.partition(":")
    if not sep or not model.strip():
        raise ConfigError(where, f"expected \"pool\" or \"<provider>:<model>\", got {value!r}")
    return RouteTarget(provider, model.strip())


# -- field readers (paths inside one list item) ------------------------------------


def _value(item: dict, where: str, name: str, kinds: tuple[type, ...], what: str) -> Any:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise ConfigError(f"{where}.{name}", f"expected {what}, got {type(value).__name__}")
    return value


def _text(item: dict, where: str, name: str, *, required: bool = False) -> str:
    value = (_value(item, where, name, (str,), "a string") or "").strip()
    if required and not value:
        raise ConfigError(f"{where}.{name}", "is required")
    return value


def _one_of(item: dict, where: str, name: str, default: str, allowed: tuple[str, ...]) -> Any:
    value = _value(item, where, name, (str,), "a string") or default
    if value not in allowed:
        raise ConfigError(f"{where}.{name}", f"must be one of {', '.join(allowed)}; "
                                             f"got {value!r}")
    return value


def _flag(item: dict, where: str, name: str, default: bool) -> bool:
    value = _value(item, where, name, (bool,), "a boolean")
    return default if value is None else value


def _number(item: dict, where: str, name: str, default: float, lo: float) -> float:
    value = _value(item, where, name, (int, float), "a number")
    value = default if value is None else float(value)
    if not value >= lo or value == float("inf"):  # NaN and inf as well
        raise ConfigError(f"{where}.{name}", f"must be at least {lo:g}, got {value:g}")
    return value


def _integer(item: dict, where: str, name: str, default: int, lo: int, hi: int) -> int:
    value = _value(item, where, name, (int,), "an integer")
    value = default if value is None else value
    if not lo <= value <= hi:
        raise ConfigError(f"{where}.{name}", f"must be between {lo} and {hi}, got {value}")
    return value


def _models(item: dict, where: str) -> tuple[str, ...]:
    value = _value(item, where, "models", (list,), "a list of model names")
    models: list[str] = []
    for i, name in enumerate(value or ()):
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}.models[{i}]", "expected a model name or glob")
        models.append(name.strip())
    return tuple(models)


def _headers(item: dict, where: str) -> tuple[tuple[str, str], ...]:
    value = _value(item, where, "headers", (dict,), "an object of header → value")
    headers: list[tuple[str, str]] = []
    for name, text in (value or {}).items():
        if not isinstance(text, str):
            raise ConfigError(f"{where}.headers.{name}", "expected a string")
        if not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", name) or "\n" in text or "\r" in text:
            raise ConfigError(f"{where}.headers.{name}", "is not a valid HTTP header")
        headers.append((name, text))
    return tuple(headers)
