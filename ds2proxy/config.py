"""Configuration: the validated, typed view of the raw config document.

The raw JSON document is the source of truth (so fields this version does not
know survive a write); :class:`Config` is its validated, typed view and
:func:`parse_config` builds it, naming the field at fault. Loading, saving and
live updates are :mod:`ds2proxy.config_store`'s.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from .config_values import ConfigError, _choice, _get, _int, _num, check_proxy_url
from .embeddings_settings import parse_embeddings
from .health.settings import HealthSettings, parse_health
from .keyring import KeyConfig, KeyEntryError, parse_keys
from .observe_settings import ObserveSettings, parse_observe
from .providers.settings import ModelRoute, ProviderSettings, parse_model_routes, parse_providers
from .state.settings import StateSettings, parse_state

log = logging.getLogger("ds2proxy.config")

DEFAULT_BASE_URL = "https://chat.deepseek.com"
# none keeps the web chat's sessions; single deletes each turn's own once it ends.
SESSION_CLEANUP_CHOICES = ("none", "single")


# --------------------------------------------------------------------------
# Typed view
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One DeepSeek web account. Identity: e-mail, else mobile, else token hash."""

    email: str = ""
    mobile: str = ""
    area_code: str = ""
    password: str = ""
    token: str = ""
    proxy: str = ""  # http://, socks5:// (user:pass@ allowed): this account's outbound route

    @property
    def identifier(self) -> str:
        if self.email:
            return self.email
        if self.mobile:
            return normalise_mobile(self.mobile)
        return "token:" + hashlib.sha256(self.token.encode()).hexdigest()[:12]

    @property
    def can_login(self) -> bool:
        return bool((self.email or self.mobile) and self.password)


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = 120.0
    client_version: str = "2.0.4"
    user_agent: str = "DeepSeek/2.0.4 Android/35"
    platform: str = "android"
    locale: str = "zh_CN"
    token_refresh_interval_hours: float = 6.0
    max_continue_rounds: int = 8
    silence_timeout_seconds: float = 300.0
    # Fail-over before any output: accounts tried at most, and one deadline
    # for that whole phase (every attempt together).
    max_attempts: int = 3
    first_output_timeout_seconds: float = 300.0
    session_cleanup: str = "none"  # none | single: delete each turn's chat sessions


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    account_max_inflight: int = 2
    account_max_queue: int | None = None  # None: accounts x per-account
    global_max_inflight: int = 0  # 0: accounts x per-account
    queue_timeout_seconds: float = 120.0
    keepalive_seconds: float = 5.0
    max_body_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Client connection limits (read at start-up)."""

    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 120.0
    keepalive_timeout_seconds: float = 75.0
    max_connections: int = 4096


@dataclass(frozen=True, slots=True)
class HistoryFileSettings:
    """Long conversations sent as an uploaded file (prompt-compat §6). Off by
    default: the upload costs a round trip, so only long prompts gain."""

    enabled: bool = False
    min_prompt_chars: int = 60000
    file_name: str = "HISTORY.txt"


@dataclass(frozen=True, slots=True)
class Config:
    keys: tuple[str, ...] = ()  # the secrets, for membership tests
    named_keys: tuple[KeyConfig, ...] = ()
    accounts: tuple[AccountConfig, ...] = ()
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    claude_mapping: dict[str, str] = field(default_factory=dict)
    model_aliases: dict[str, str] = field(default_factory=dict)
    family_fallback: bool = True
    default_model: str = "deepseek-chat"
    toolcall_mode: str = "feature_match"
    toolcall_early_emit: str = "high"
    responses_ttl_seconds: int = 900
    embeddings_provider: str = ""  # "" (off), "testing" or a provider's name
    embeddings_model: str = ""  # the provider's model id ("": the one asked for)
    jwt_expire_hours: float = 24.0
    allow_passthrough: bool = True
    citation_style: str = "raw"
    thinking_injection: str = ""
    history_file: HistoryFileSettings = field(default_factory=HistoryFileSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    captures_enabled: bool = False
    captures_limit: int = 20
    captures_max_body_bytes: int = 65536
    observe: ObserveSettings = field(default_factory=ObserveSettings)
    providers: tuple[ProviderSettings, ...] = ()
    model_routes: tuple[ModelRoute, ...] = ()
    state: StateSettings = field(default_factory=StateSettings)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def key_named(self, secret: str) -> KeyConfig | None:
        return next((k for k in self.named_keys if k.secret == secret), None)

    def provider_named(self, name: str) -> ProviderSettings | None:
        return next((p for p in self.providers if p.name == name), None)


# --------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------


def normalise_mobile(mobile: str) -> str:
    """``+<country><digits>``; bare 11-digit Chinese numbers get +86 (spec §13)."""
    digits = re.sub(r"\D", "", mobile)
    if len(digits) == 13 and digits.startswith("86"):
        return "+" + digits
    if len(digits) == 11 and digits.startswith("1"):
        return "+86" + digits
    return "+" + digits if digits else ""


def _str_map(data: dict, path: str) -> dict[str, str]:
    value = _get(data, path, dict, {})
    for k, v in value.items():
        if not isinstance(v, str):
            raise ConfigError(f"{path}.{k}", "expected a string")
    return dict(value)


def _parse_accounts(data: dict) -> tuple[AccountConfig, ...]:
    items = _get(data, "accounts", list, [])
    accounts: list[AccountConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"accounts[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(where, "expected an object")
        values = {}
        for name in ("email", "mobile", "area_code", "password", "token", "proxy"):
            v = item.get(name)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"{where}.{name}", "expected a string")
            values[name] = (v or "").strip()
        check_proxy_url(f"{where}.proxy", values["proxy"])
        acc = AccountConfig(**values)
        if not (acc.email or acc.mobile or acc.token):
            raise ConfigError(where, "needs an email, a mobile or a token")
        if (acc.email or acc.mobile) and not acc.password and not acc.token:
            raise ConfigError(f"{where}.password", "required with email or mobile (or give a token)")
        if acc.identifier in seen:
            raise ConfigError(where, f"duplicate account {acc.identifier}")
        seen.add(acc.identifier)
        accounts.append(acc)
    return tuple(accounts)


def _parse_keys(data: dict) -> tuple[KeyConfig, ...]:
    keys = _get(data, "keys", list, [])
    try:
        return parse_keys(keys)
    except KeyEntryError as exc:
        raise ConfigError(exc.where, str(exc)) from None


def _parse_upstream(data: dict) -> UpstreamSettings:
    d = UpstreamSettings()
    base_url = _get(data, "upstream.base_url", str, d.base_url).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", base_url):
        raise ConfigError("upstream.base_url", f"must be an http(s) URL, got {base_url!r}")
    return UpstreamSettings(
        base_url=base_url,
        timeout_seconds=_num(data, "upstream.timeout_seconds", d.timeout_seconds, 1),
        client_version=_get(data, "upstream.client_version", str, d.client_version),
        user_agent=_get(data, "upstream.user_agent", str, d.user_agent),
        platform=_get(data, "upstream.platform", str, d.platform),
        locale=_get(data, "upstream.locale", str, d.locale),
        token_refresh_interval_hours=_num(
            data, "upstream.token_refresh_interval_hours", d.token_refresh_interval_hours, 0),
        max_continue_rounds=_int(data, "upstream.max_continue_rounds", d.max_continue_rounds, 0, 32),
        silence_timeout_seconds=_num(
            data, "upstream.silence_timeout_seconds", d.silence_timeout_seconds, 1),
        max_attempts=_int(data, "upstream.max_attempts", d.max_attempts, 1, 16),
        first_output_timeout_seconds=_num(data, "upstream.first_output_timeout_seconds",
                                          d.first_output_timeout_seconds, 0.1),
        session_cleanup=_choice(data, "upstream.session_cleanup", d.session_cleanup,
                                SESSION_CLEANUP_CHOICES),
    )


def _parse_runtime(data: dict) -> RuntimeSettings:
    d = RuntimeSettings()
    return RuntimeSettings(
        account_max_inflight=_int(data, "runtime.account_max_inflight", d.account_max_inflight, 1, 64),
        account_max_queue=_int(data, "runtime.account_max_queue", None, 0, 100000),
        global_max_inflight=_int(data, "runtime.global_max_inflight", d.global_max_inflight, 0, 100000),
        queue_timeout_seconds=_num(data, "runtime.queue_timeout_seconds", d.queue_timeout_seconds, 0),
        keepalive_seconds=_num(data, "runtime.keepalive_seconds", d.keepalive_seconds, 0.05),
        max_body_bytes=_int(data, "runtime.max_body_bytes", d.max_body_bytes, 1024),
    )


def _parse_server(data: dict) -> ServerSettings:
    d = ServerSettings()
    return ServerSettings(
        header_timeout_seconds=_num(data, "server.header_timeout_seconds",
                                    d.header_timeout_seconds, 0.1),
        body_timeout_seconds=_num(data, "server.body_timeout_seconds", d.body_timeout_seconds, 0.1),
        keepalive_timeout_seconds=_num(data, "server.keepalive_timeout_seconds",
                                       d.keepalive_timeout_seconds, 0.1),
        max_connections=_int(data, "server.max_connections", d.max_connections, 1, 1000000),
    )


def _parse_history_file(data: dict) -> HistoryFileSettings:
    d = HistoryFileSettings()
    return HistoryFileSettings(
        enabled=_get(data, "history_file.enabled", bool, d.enabled),
        min_prompt_chars=_int(data, "history_file.min_prompt_chars", d.min_prompt_chars, 0),
        file_name=_file_name(data, "history_file.file_name", d.file_name),
    )


def _file_name(data: dict, path: str, default: str) -> str:
    """A bare file name: the upstream store keeps no folders, and the
    extension tells it how to parse the file."""
    name = _get(data, path, str, default).strip()
    if not name:
        raise ConfigError(path, "must not be empty")
    if len(name) > 255:
        raise ConfigError(path, f"must be at most 255 characters, got {len(name)}")
    if "/" in name or "\\" in name or not name.isprintable():
        raise ConfigError(path, f"must be a plain file name without folders, got {name!r}")
    return name


def parse_config(data: Any) -> Config:
    """Validate a raw config document; raise ConfigError naming the field."""
    if not isinstance(data, dict):
        raise ConfigError("(root)", "expected a JSON object")
    named = _parse_keys(data)
    providers = parse_providers(data)
    return Config(
        keys=tuple(k.secret for k in named),
        named_keys=named,
        accounts=_parse_accounts(data),
        upstream=_parse_upstream(data),
        runtime=_parse_runtime(data),
        server=_parse_server(data),
        claude_mapping=_str_map(data, "claude_mapping"),
        model_aliases=_str_map(data, "model_aliases"),
        family_fallback=_get(data, "models.family_fallback", bool, True),
        default_model=_get(data, "models.default", str, "deepseek-chat"),
        toolcall_mode=_choice(data, "toolcall.mode", "feature_match", ("feature_match", "off")),
        toolcall_early_emit=_choice(
            data, "toolcall.early_emit_confidence", "high", ("high", "low", "off")),
        responses_ttl_seconds=_int(data, "responses.store_ttl_seconds", 900, 1, 7 * 86400),
        embeddings_provider=parse_embeddings(data).provider,
        embeddings_model=parse_embeddings(data).model,
        jwt_expire_hours=_num(data, "admin.jwt_expire_hours", 24.0, 0.01),
        allow_passthrough=_get(data, "auth.allow_passthrough", bool, True),
        citation_style=_choice(data, "search.citation_style", "raw", ("raw", "markdown", "strip")),
        thinking_injection=(
            _get(data, "thinking_injection.prompt", str, "")
            if _get(data, "thinking_injection.enabled", bool, False) else ""),
        history_file=_parse_history_file(data),
        health=parse_health(data),
        captures_enabled=_get(data, "dev_captures.enabled", bool, False),
        captures_limit=_int(data, "dev_captures.limit", 20, 1, 1000),
        captures_max_body_bytes=_int(data, "dev_captures.max_body_bytes", 65536, 256),
        observe=parse_observe(data),
        providers=providers,
        model_routes=parse_model_routes(data, providers),
        state=parse_state(data),
        raw=data,
    )
