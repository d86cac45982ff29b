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
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .config_sections import (
    ADMIN_MANAGED,
    DEFAULT_BASE_URL,
    SESSION_CLEANUP_CHOICES,
    AdminSettings,
    AuthSettings,
    DevCapturesSettings,
    HistoryFileSettings,
    ModelsSettings,
    ResponsesSettings,
    RuntimeSettings,
    SearchSettings,
    ServerSettings,
    ThinkingInjectionSettings,
    ToolcallSettings,
    UpstreamSettings,
)
from .config_values import ConfigError, check_proxy_url, read_value
from .embeddings_settings import EmbeddingsSettings, check_embeddings
from .health.settings import HealthSettings
from .keyring import KeyConfig, KeyEntryError, parse_keys
from .observe_settings import LogSettings, MetricsSettings, UsageSettings
from .providers.settings import (
    PROVIDER_FIELDS,
    ModelRoute,
    ProviderSettings,
    check_model_routes,
    parse_model_routes,
    parse_providers,
)
from .state.settings import StateSettings, with_env_url
from .settings_schema import FormSpec, parse_section, section, setting

log = logging.getLogger("ds2proxy.config")

__all__ = ["DEFAULT_BASE_URL", "SESSION_CLEANUP_CHOICES", "AccountConfig", "Config",
           "ConfigError", "HistoryFileSettings", "RuntimeSettings", "ServerSettings",
           "UpstreamSettings", "normalise_mobile", "parse_config"]


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


MAP_EXAMPLES = {
    "claude_mapping": "fast = deepseek-chat\nslow = deepseek-reasoner",
    "model_aliases": "gpt-4o = deepseek-chat\nmy-team-model = deepseek-reasoner",
}
ACCOUNT_FIELDS = tuple(f.name for f in fields(AccountConfig))


def _parse_accounts(path: str, raw: Any) -> tuple[AccountConfig, ...]:
    items = read_value(path, [] if raw is None else raw, list)
    accounts: list[AccountConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        acc = _parse_account(f"{path}[{i}]", item)
        if acc.identifier in seen:
            raise ConfigError(f"{path}[{i}]", f"duplicate account {acc.identifier}")
        seen.add(acc.identifier)
        accounts.append(acc)
    return tuple(accounts)


def _parse_account(where: str, item: Any) -> AccountConfig:
    if not isinstance(item, dict):
        raise ConfigError(where, "expected an object")
    values = {}
    for name in ACCOUNT_FIELDS:
        v = item.get(name)
        if v is not None and not isinstance(v, str):
            raise ConfigError(f"{where}.{name}", "expected a string")
        values[name] = (v or "").strip()
    check_proxy_url(f"{where}.proxy", values["proxy"])
    if not header_safe(values["token"]):
        # Sent as the Authorization header: the HTTP client would refuse every call.
        raise ConfigError(f"{where}.token", "must not contain spaces or control characters")
    acc = AccountConfig(**values)
    if not (acc.email or acc.mobile or acc.token):
        raise ConfigError(where, "needs an email, a mobile or a token")
    if (acc.email or acc.mobile) and not acc.password and not acc.token:
        raise ConfigError(f"{where}.password", "required with email or mobile (or give a token)")
    return acc


def header_safe(text: str) -> bool:
    """No whitespace or control character in ``text``. Every whitespace but
    the space is unprintable, so two C-level scans answer what a test of each
    character did (a config of thousands of tokens is parsed on every write)."""
    return text.isprintable() and " " not in text


def _parse_keys(path: str, raw: Any) -> tuple[KeyConfig, ...]:
    try:
        return parse_keys(read_value(path, [] if raw is None else raw, list))
    except KeyEntryError as exc:
        raise ConfigError(exc.where, str(exc)) from None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole document. Each attribute is one top-level JSON field."""

    keys: tuple[KeyConfig, ...] = setting(
        doc="API keys your callers use. A key listed here leases one of the accounts; any "
        "other credential is treated as a raw DeepSeek user token (pass-through). Each key is "
        "{key, name (not 'pass-through', the usage log's name for those), note, created, "
        "expires (Unix seconds, 0 never), models (names or globs; "
        "empty: all), limits {rpm, tokens_per_day, concurrent} (0: unlimited), disabled}. A "
        "bare string still works and is turned into an object on the next write.",
        factory=tuple, secret=True, parse=_parse_keys)
    accounts: tuple[AccountConfig, ...] = setting(
        doc="DeepSeek web-chat accounts: {email, password}, {mobile, area_code, password}, or "
        "{token} alone. 'token' is filled in and refreshed automatically after login. Optional "
        "'proxy': http://[user:pass@]host:port or socks5://[user:pass@]host:port (socks5h:// "
        "and socks4:// too; SOCKS5 names are resolved by the proxy) that every "
        "upstream call of that account goes through.",
        factory=tuple, secret=True, parse=_parse_accounts, item_fields=ACCOUNT_FIELDS)
    upstream: UpstreamSettings = section(UpstreamSettings, "The DeepSeek web API.")
    runtime: RuntimeSettings = section(RuntimeSettings, "Account pool limits and streaming.")
    server: ServerSettings = section(ServerSettings, "Client connection limits.")
    claude_mapping: dict[str, str] = setting(
        doc="Claude model names: names containing opus/reasoner/slow use 'slow', all others "
        "'fast'.", factory=dict,
        form=FormSpec("Models", "Claude mapping", "One per line, e.g. fast = deepseek-chat and "
                      "slow = deepseek-reasoner. Claude names with opus/reasoner/slow use "
                      "slow.", MAP_EXAMPLES["claude_mapping"]))
    model_aliases: dict[str, str] = setting(
        doc="Extra model names mapped onto native models; these win over the built-in list "
        "and claude_mapping.", factory=dict,
        form=FormSpec("Models", "Model aliases", "One per line: name = native model "
                      "(deepseek-chat, deepseek-reasoner, …).", MAP_EXAMPLES["model_aliases"]))
    models: ModelsSettings = section(ModelsSettings, "Model name resolution.")
    toolcall: ToolcallSettings = section(ToolcallSettings, "Tool calls emulated in the text.")
    responses: ResponsesSettings = section(ResponsesSettings, "The /v1/responses store.")
    embeddings: EmbeddingsSettings = section(EmbeddingsSettings, "/v1/embeddings.")
    admin: AdminSettings = section(AdminSettings, "The admin API and dashboard.",
                                   managed=ADMIN_MANAGED)
    auth: AuthSettings = section(AuthSettings, "Who may call the APIs.")
    search: SearchSettings = section(SearchSettings, "Web search answers.")
    thinking_injection: ThinkingInjectionSettings = section(
        ThinkingInjectionSettings, "A nudge to think longer.")
    history_file: HistoryFileSettings = section(
        HistoryFileSettings, "Long conversations sent as an uploaded file.")
    health: HealthSettings = section(HealthSettings, "Account health and pacing.")
    dev_captures: DevCapturesSettings = section(
        DevCapturesSettings, "Recorded upstream exchanges, for diagnosis.")
    usage: UsageSettings = section(UsageSettings, "Usage accounting and the request log.")
    metrics: MetricsSettings = section(MetricsSettings, "Prometheus metrics.")
    log: LogSettings = section(LogSettings, "Logging.")
    plugins: dict[str, Any] = setting(
        doc="Per-plugin settings: plugins.<name> is handed to that plugin as api.settings, "
        "checked by the plugin on every write and applied without a restart (except "
        "openai.root_routes). plugins.<name>.enabled: false leaves that plugin unloaded "
        "(read at start; its routes then 404). First-party ones: plugins.openai.root_routes (also serve the OpenAI routes without "
        "/v1; default true), plugins.ollama.implied_key (one of keys, assumed for Ollama "
        "requests that carry no credential; off when absent), plugins.lm.default_model (model "
        "for /lm/v2 requests without one; default models.default), plugins.degpt.provider, "
        ".name and .default_locale (override what GET /api/v1/models reports).",
        factory=dict)
    providers: tuple[ProviderSettings, ...] = setting(
        doc="OpenAI-compatible APIs that serve some model names: {name (a-z 0-9 _ -, unique), "
        "kind: openai, base_url (http(s), up to /v1), api_key (secret), models (names or globs "
        "it serves), headers {name: value}, timeout_seconds (default 120), max_inflight "
        "(default 8), reasoning: field (reasoning_content) | think_tags (<think>...</think> in "
        "the text) | none, tools (default true: native tool calls; false: tool calls emulated "
        "in the prompt), embeddings_batch_size (default 64)}. Managed under /admin/providers.",
        factory=tuple, secret=True, item_fields=PROVIDER_FIELDS,
        parse=lambda path, raw: parse_providers({"providers": raw}))
    model_routes: tuple[ModelRoute, ...] = setting(
        doc="A requested model name or glob -> ordered targets: \"pool\" (the web-chat "
        "accounts) or \"<provider>:<model>\". The next target is tried only when the previous "
        "cannot serve before any output (pool exhausted, provider 429/5xx, timeout).",
        factory=tuple, parse=parse_model_routes)
    state: StateSettings = section(
        StateSettings, "Where shared runtime state lives (one process, or Redis for several).")
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key_secrets(self) -> tuple[str, ...]:
        """The API key secrets, for membership tests."""
        return tuple(k.secret for k in self.keys)

    def key_named(self, secret: str) -> KeyConfig | None:
        return next((k for k in self.keys if k.secret == secret), None)

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


def parse_config(data: Any) -> Config:
    """Validate a raw config document; raise ConfigError naming the field."""
    if not isinstance(data, dict):
        raise ConfigError("(root)", "expected a JSON object")
    parsed: Config = parse_section(Config, data)
    # Settings that name each other are checked once every section is read.
    check_embeddings(parsed.embeddings, parsed.providers)
    check_model_routes(parsed.model_routes, parsed.providers)
    return replace(parsed, raw=data, state=with_env_url(parsed.state))
