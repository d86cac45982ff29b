"""The core's config sections that have no other home: each class is one
JSON section, each field one setting (see :mod:`ds2proxy.settings_schema`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config_values import ConfigError
from .settings_schema import FormSpec, setting

DEFAULT_BASE_URL = "https://chat.deepseek.com"
# none keeps the web chat's sessions; single deletes each turn's own once it ends.
SESSION_CLEANUP_CHOICES = ("none", "single")
POOL = "Account pool"
TOOLS = "Tool calls and APIs"
DIAGNOSTICS = "Admin and diagnostics"


def _http_url(path: str, value: str) -> str:
    url = value.rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(path, "must be an http(s) URL such as https://chat.deepseek.com")
    if "@" in url.split("/")[2]:
        raise ConfigError(path, "must not carry a user or password (it is shown in admin "
                                "reads and logged as it is)")
    return url


def header_value(path: str, value: str) -> str:
    """A value sent as an HTTP header: a control character (CR/LF above all)
    makes the HTTP client refuse every request that carries it."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(path, "must not contain control characters (it is sent as an "
                                "HTTP header)")
    return value


def _file_name(path: str, value: str) -> str:
    """A bare file name: the upstream store keeps no folders, and the
    extension tells it how to parse the file."""
    name = value.strip()
    if not name:
        raise ConfigError(path, "must not be empty")
    if len(name) > 255:
        raise ConfigError(path, f"must be at most 255 characters, got {len(name)}")
    if "/" in name or "\\" in name or name in (".", "..") or not name.isprintable():
        raise ConfigError(path, f"must be a plain file name without folders, got {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    base_url: str = setting(
        DEFAULT_BASE_URL, "The DeepSeek web-chat origin. Tests and --demo point this at the "
        "bundled fake upstream.", check=_http_url)
    timeout_seconds: float = setting(120.0, "Timeout of each non-streaming upstream call.", min=1)
    client_version: str = setting(
        "2.0.4", "x-client-version sent upstream; raise it if the upstream answers "
        "CLIENT_VERSION_TOO_LOW.", check=header_value)
    user_agent: str = setting("DeepSeek/2.0.4 Android/35", "User-Agent sent upstream.",
                              check=header_value)
    platform: str = setting("android", "x-client-platform sent upstream.", check=header_value)
    locale: str = setting("zh_CN", "x-client-locale sent upstream.", check=header_value)
    token_refresh_interval_hours: float = setting(
        6.0, "Log in again when a token is older than this (0: never proactively).", min=0)
    max_continue_rounds: int = setting(
        8, "Most chat/continue rounds per request when the upstream stops INCOMPLETE.",
        min=0, max=32)
    silence_timeout_seconds: float = setting(
        300.0, "Give up on a stream that sends nothing (or only keep-alive comments) for this "
        "long (a 504 upstream_timeout "
        "unless another account may be tried).", min=1)
    max_attempts: int = setting(
        3, "Most accounts one request tries when an account fails before any output. The "
        "caller then gets the last failure as a 502 (504 for a timeout).", min=1, max=16)
    first_output_timeout_seconds: float = setting(
        300.0, "One deadline for everything before the upstream's first output (login, "
        "session, PoW, waiting for the first token) over all attempts together; past it the "
        "caller gets a 504 upstream_timeout.", min=0.1)
    keepalive_connections: int = setting(
        128, "Idle upstream connections kept open for reuse (per upstream host); one "
        "released beyond this is closed. Each kept one saves a later call its TCP and TLS "
        "handshakes and costs memory while idle; connections in use have no cap.",
        min=0, max=100000,
        form=FormSpec("Web chat", "Idle connections kept",
                      "Upstream connections kept open for reuse after a call (0: none). "
                      "More save handshakes; each costs memory while idle."))
    session_cleanup: str = setting(
        "none", "none: keep the web-chat session each request opens; single: delete it once "
        "the request is over (in the background).", choices=SESSION_CLEANUP_CHOICES,
        form=FormSpec("Web chat", "Session cleanup",
                      "none keeps one web-chat session per request in the account's history; "
                      "single deletes each request's session once it is answered."))


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    account_max_inflight: int = setting(
        2, "Concurrent requests per account.", min=1, max=64,
        form=FormSpec(POOL, "Requests per account",
                      "Concurrent requests one account serves (1–64)."))
    account_max_queue: int | None = setting(
        None, "Requests that may wait for a free account; null means accounts x per-account, "
        "0 means no waiting.", min=0, max=100000,
        form=FormSpec(POOL, "Wait queue", "Requests that may wait for a free account. Empty: "
                      "accounts × per-account; 0: never wait."))
    global_max_inflight: int = setting(
        0, "Concurrent requests over all accounts; 0 means accounts x per-account.",
        min=0, max=100000, form=FormSpec(POOL, "Global limit"))
    queue_timeout_seconds: float = setting(
        120.0, "How long a request may wait for an account before a 429.", min=0,
        form=FormSpec(POOL, "Queue timeout (s)"))
    keepalive_seconds: float = setting(
        5.0, "Keep-alive interval of streams while the upstream is silent.", min=0.05)
    max_body_bytes: int = setting(
        64 * 1024 * 1024, "Largest request body of every API family (OpenAI, Anthropic, "
        "Gemini, /api/v1, /lm/v2, plugins): 413 in the family's shape, refused from "
        "Content-Length before reading. Admin JSON and dashboard forms have a fixed 8 MiB "
        "limit.", min=1024)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Client connection limits (read at start-up)."""

    header_timeout_seconds: float = setting(
        10.0, "A client must finish sending a request head within this time from connecting "
        "(or from the first byte of its next keep-alive request); else the connection is "
        "closed.", min=0.1, hot=False)
    body_timeout_seconds: float = setting(
        120.0, "A client must finish sending a request body within this time from the end of "
        "its head; else the connection is closed.", min=0.1, hot=False)
    keepalive_timeout_seconds: float = setting(
        75.0, "An idle keep-alive connection is closed after this time.", min=0.1, hot=False)
    max_connections: int = setting(
        4096, "Most client connections open at once; a connection beyond it gets a 503 with "
        "Retry-After and is closed.", min=1, max=1000000, hot=False)


@dataclass(frozen=True, slots=True)
class ModelsSettings:
    family_fallback: bool = setting(
        True, "Resolve unknown gpt-*/o*/claude-*/gemini-* names by keywords "
        "(reason/opus/search).")
    default: str = setting(
        "deepseek-chat", "The model used for \"model\": \"auto\" on the /api/v1 surface.")


@dataclass(frozen=True, slots=True)
class ToolcallSettings:
    mode: str = setting(
        "feature_match", "feature_match: detect tool calls in the model's text; off: pass "
        "tool syntax through as text (diagnosis only).", choices=("feature_match", "off"),
        form=FormSpec(TOOLS, "Tool-call detection",
                      "feature_match detects tool calls in the model's text; off passes them "
                      "through as text."))
    early_emit_confidence: str = setting(
        "high", "high: emit each call at its closing invoke tag; low: emit the call's name as "
        "soon as it is known; off: emit all calls when the block closes.",
        choices=("high", "low", "off"),
        form=FormSpec(TOOLS, "Early emit", "How soon a streamed tool call is announced."))


@dataclass(frozen=True, slots=True)
class ResponsesSettings:
    store_ttl_seconds: int = setting(
        900, "How long /v1/responses objects stay readable by their creator.",
        min=1, max=7 * 86400, form=FormSpec(TOOLS, "Responses TTL (s)"))


@dataclass(frozen=True, slots=True)
class AuthSettings:
    allow_passthrough: bool = setting(
        True, "false: a credential not in 'keys' is refused with 401.",
        form=FormSpec(TOOLS, "Allow pass-through tokens",
                      "Off: a credential that is not an API key is refused with 401."))


# The longest admin session, whether the config or a login asks for it.
MAX_SESSION_HOURS = 24 * 30


@dataclass(frozen=True, slots=True)
class AdminSettings:
    jwt_expire_hours: float = setting(
        24.0, "Lifetime of admin session tokens.", min=0.01, max=MAX_SESSION_HOURS,
        form=FormSpec(DIAGNOSTICS, "Session lifetime (h)", "How long an admin login lasts."))


ADMIN_MANAGED = {
    "password_hash": "Salted hash of the admin password, set from the dashboard (secret).",
    "jwt_secret": "Signing secret of admin sessions, created at the first start (secret).",
    "jwt_valid_after": "Sessions issued before this Unix time are revoked (a password "
                       "change sets it).",
    "jwt_generation": "Bumped by each password change: sessions issued in an earlier "
                      "generation are revoked on every instance, whatever its clock.",
}


@dataclass(frozen=True, slots=True)
class SearchSettings:
    citation_style: str = setting(
        "raw", "raw: keep the upstream's [reference:N] markers; markdown: turn them into "
        "[N+1](url) links; strip: remove them.", choices=("raw", "markdown", "strip"),
        form=FormSpec("Models", "Citation style", "raw keeps [reference:N] markers; markdown "
                      "turns them into links; strip removes them."))


@dataclass(frozen=True, slots=True)
class ThinkingInjectionSettings:
    enabled: bool = setting(
        False, "Append a 'think thoroughly' paragraph to the last user message when thinking "
        "is on.")
    prompt: str = setting("", "The paragraph appended when thinking_injection is enabled.")

    @property
    def active_prompt(self) -> str:
        """The paragraph to append, or "" when the injection is off."""
        return self.prompt if self.enabled else ""


@dataclass(frozen=True, slots=True)
class HistoryFileSettings:
    """Long conversations sent as an uploaded file (prompt-compat §6). Off by
    default: the upload costs a round trip, so only long prompts gain."""

    enabled: bool = setting(
        False, "Send a long conversation as an uploaded text file plus a short prompt that "
        "refers to it.", form=FormSpec("Long conversations", "Send long history as a file",
                                       "Upload a long conversation as a text file and send a "
                                       "short prompt that refers to it."))
    min_prompt_chars: int = setting(
        60000, "Only prompts longer than this many characters go as a file; 0 sends every "
        "prompt that way.", min=0,
        form=FormSpec("Long conversations", "History file threshold (characters)",
                      "Only prompts longer than this go as a file; 0: every prompt."))
    file_name: str = setting(
        "HISTORY.txt", "Name of the uploaded history file (a plain name, no folders).",
        check=_file_name, form=FormSpec("Long conversations", "History file name",
                                        "Name of the uploaded history file. Empty: "
                                        "HISTORY.txt."))


@dataclass(frozen=True, slots=True)
class DevCapturesSettings:
    enabled: bool = setting(
        False, "Keep a ring buffer of recent upstream exchanges (secrets redacted) for the "
        "admin dashboard.", form=FormSpec(DIAGNOSTICS, "Record upstream exchanges",
                                          "Keep recent upstream exchanges (secrets redacted) "
                                          "under Captures."))
    limit: int = setting(20, "How many exchanges the capture buffer keeps.", min=1, max=1000,
                         form=FormSpec(DIAGNOSTICS, "Captures kept", "Ring buffer size (1–1000)."))
    max_body_bytes: int = setting(
        65536, "How much of each captured stream is kept.", min=256,
        form=FormSpec(DIAGNOSTICS, "Capture body limit (bytes)"))
