"""The runtime settings the admin may change: one table drives the JSON
API's read and partial update and the dashboard's settings form.

A setting lives at a dotted path of the config document. ``PUT`` bodies use
the nested shape ``GET`` returns; only the given fields change, ``null``
resets a field to its default, and the two model maps are replaced whole
(so an entry can be removed). The read-only facts ``GET`` adds are ignored
on the way back in, so a client may send back what it read.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..config import Config, ConfigError, parse_config
from ..config_fields import suggestion
from ..errors import InvalidRequest
from .responses import FieldErrors


@dataclass(frozen=True, slots=True)
class Setting:
    path: str
    kind: str  # int | float | bool | choice | map | text
    label: str
    help: str
    choices: tuple[str, ...] = ()
    nullable: bool = False
    example: str = ""


@dataclass(frozen=True, slots=True)
class Group:
    title: str
    settings: tuple[Setting, ...]


GROUPS: tuple[Group, ...] = (
    Group("Account pool", (
        Setting("runtime.account_max_inflight", "int", "Requests per account",
                "Concurrent requests one account serves (1–64)."),
        Setting("runtime.account_max_queue", "int", "Wait queue",
                "Requests that may wait for a free account. Empty: accounts × per-account; "
                "0: never wait.", nullable=True),
        Setting("runtime.global_max_inflight", "int", "Global limit",
                "Concurrent requests over all accounts. 0: accounts × per-account."),
        Setting("runtime.queue_timeout_seconds", "float", "Queue timeout (s)",
                "How long a request may wait for an account before a 429."),
    )),
    Group("Account health and pacing", (
        Setting("health.enabled", "bool", "Track account health",
                "Cool failing accounts down and heal them with one trial request. Off: every "
                "account serves except the disabled ones."),
        Setting("health.jitter", "float", "Cooldown jitter",
                "Each cooldown is stretched or shrunk at random by up to this fraction."),
        *(Setting(f"health.cooldown.{kind}.{edge}_seconds", "float",
                  f"{title}: {'first' if edge == 'base' else 'longest'} cooldown (s)",
                  help_text if edge == "base" else "The cap the doubling stops at.")
          for kind, title, help_text in (
              ("rate_limited", "Rate limit", "After an upstream 429 or rate-limit hint; "
               "doubles per failure in a row."),
              ("upstream", "Upstream error", "After a 5xx, a broken stream or a transport "
               "error."),
              ("auth", "Refused token", "After a token is refused right after a fresh login."),
              ("login", "Failed login", "Before a failed login is tried again."))
          for edge in ("base", "max")),
        Setting("health.pacing.min_interval_seconds", "float", "Pacing: minimum interval (s)",
                "Least time between two requests on one account. 0: off."),
        Setting("health.pacing.jitter_seconds", "float", "Pacing: jitter (s)",
                "A random 0..this is added to each interval."),
        Setting("health.pacing.max_per_hour", "int", "Pacing: requests per hour",
                "Most requests one account starts in a rolling hour. 0: no cap."),
    )),
    Group("Models", (
        Setting("claude_mapping", "map", "Claude mapping",
                "One per line, e.g. fast = deepseek-chat and slow = deepseek-reasoner. "
                "Claude names with opus/reasoner/slow use slow.",
                example="fast = deepseek-chat\nslow = deepseek-reasoner"),
        Setting("model_aliases", "map", "Model aliases",
                "One per line: name = native model (deepseek-chat, deepseek-reasoner, …).",
                example="gpt-4o = deepseek-chat\nmy-team-model = deepseek-reasoner"),
        Setting("search.citation_style", "choice", "Citation style",
                "raw keeps [reference:N] markers; markdown turns them into links; strip "
                "removes them.", ("raw", "markdown", "strip")),
    )),
    Group("Tool calls and APIs", (
        Setting("toolcall.mode", "choice", "Tool-call detection",
                "feature_match detects tool calls in the model's text; off passes them "
                "through as text.", ("feature_match", "off")),
        Setting("toolcall.early_emit_confidence", "choice", "Early emit",
                "How soon a streamed tool call is announced.", ("high", "low", "off")),
        Setting("responses.store_ttl_seconds", "int", "Responses TTL (s)",
                "How long /v1/responses objects stay readable."),
        Setting("embeddings.provider", "choice", "Embeddings provider",
                "A configured provider (its /embeddings serves the vectors); testing: "
                "hash-based test vectors with no meaning; (none): embeddings answer 501.",
                ("", "testing")),  # and every provider's name: see form_groups
        Setting("embeddings.model", "text", "Embeddings model",
                "The provider's embedding model id. Empty: the model the client names.",
                nullable=True),
        Setting("auth.allow_passthrough", "bool", "Allow pass-through tokens",
                "Off: a credential that is not an API key is refused with 401."),
    )),
    Group("Long conversations", (
        Setting("history_file.enabled", "bool", "Send long history as a file",
                "Upload a long conversation as a text file and send a short prompt that "
                "refers to it."),
        Setting("history_file.min_prompt_chars", "int", "History file threshold (characters)",
                "Only prompts longer than this go as a file; 0: every prompt."),
        Setting("history_file.file_name", "text", "History file name",
                "Name of the uploaded history file. Empty: HISTORY.txt.", nullable=True),
    )),
    Group("Web chat", (
        Setting("upstream.session_cleanup", "choice", "Session cleanup",
                "none keeps one web-chat session per request in the account's history; "
                "single deletes each request's session once it is answered.",
                ("none", "single")),
    )),
    Group("Admin and diagnostics", (
        Setting("admin.jwt_expire_hours", "float", "Session lifetime (h)",
                "How long an admin login lasts."),
        Setting("dev_captures.enabled", "bool", "Record upstream exchanges",
                "Keep recent upstream exchanges (secrets redacted) under Captures."),
        Setting("dev_captures.limit", "int", "Captures kept", "Ring buffer size (1–1000)."),
        Setting("dev_captures.max_body_bytes", "int", "Capture body limit (bytes)",
                "How much of each stream is kept."),
    )),
)

SETTINGS: dict[str, Setting] = {s.path: s for g in GROUPS for s in g.settings}
EMBEDDINGS_ENGINE = "embeddings.provider"
MAPS = frozenset(p for p, s in SETTINGS.items() if s.kind == "map")
READ_ONLY = frozenset({"admin.password_set", "admin.default_key_in_use", "env_backed",
                       "config_source"})


def flat_values(cfg: Config) -> dict[str, Any]:
    """Every setting's effective value, keyed by dotted path."""
    rt = cfg.runtime
    return {
        "runtime.account_max_inflight": rt.account_max_inflight,
        "runtime.account_max_queue": rt.account_max_queue,
        "runtime.global_max_inflight": rt.global_max_inflight,
        "runtime.queue_timeout_seconds": rt.queue_timeout_seconds,
        "claude_mapping": dict(cfg.claude_mapping),
        "model_aliases": dict(cfg.model_aliases),
        "search.citation_style": cfg.citation_style,
        "toolcall.mode": cfg.toolcall_mode,
        "toolcall.early_emit_confidence": cfg.toolcall_early_emit,
        "responses.store_ttl_seconds": cfg.responses_ttl_seconds,
        "embeddings.provider": cfg.embeddings_provider,
        "embeddings.model": cfg.embeddings_model,
        "auth.allow_passthrough": cfg.allow_passthrough,
        "history_file.enabled": cfg.history_file.enabled,
        "history_file.min_prompt_chars": cfg.history_file.min_prompt_chars,
        "history_file.file_name": cfg.history_file.file_name,
        "upstream.session_cleanup": cfg.upstream.session_cleanup,
        "admin.jwt_expire_hours": cfg.jwt_expire_hours,
        "dev_captures.enabled": cfg.captures_enabled,
        "dev_captures.limit": cfg.captures_limit,
        "dev_captures.max_body_bytes": cfg.captures_max_body_bytes,
        **health_values(cfg),
    }


def form_groups(cfg: Config) -> tuple[Group, ...]:
    """GROUPS as the form shows them: the embeddings engine is a choice of
    the ones that exist (off, testing, each configured provider)."""
    def offered(setting: Setting) -> Setting:
        if setting.path != EMBEDDINGS_ENGINE:
            return setting
        return replace(setting, choices=(*setting.choices, *(p.name for p in cfg.providers)))

    return tuple(Group(g.title, tuple(offered(s) for s in g.settings)) for g in GROUPS)


def health_values(cfg: Config) -> dict[str, Any]:
    h = cfg.health
    values: dict[str, Any] = {"health.enabled": h.enabled, "health.jitter": h.jitter}
    for kind, backoff in h.backoff.items():
        values[f"health.cooldown.{kind}.base_seconds"] = backoff.base_seconds
        values[f"health.cooldown.{kind}.max_seconds"] = backoff.max_seconds
    values.update({"health.pacing.min_interval_seconds": h.pacing.min_interval_seconds,
                   "health.pacing.jitter_seconds": h.pacing.jitter_seconds,
                   "health.pacing.max_per_hour": h.pacing.max_per_hour})
    return values


def nested_view(cfg: Config, *, password_set: bool, default_key_in_use: bool,
                config_source: str, memory_only: bool = False) -> dict[str, Any]:
    """The ``GET /admin/settings`` document; ``config_source`` says where the
    config lives (file, environment, demo, none, memory) and ``env_backed``
    whether changes stay in memory only."""
    view: dict[str, Any] = {}
    for path, value in flat_values(cfg).items():
        head, _, tail = path.partition(".")
        if tail:
            view.setdefault(head, {})[tail] = value
        else:
            view[head] = value
    view["admin"].update(password_set=password_set, default_key_in_use=default_key_in_use)
    view["config_source"] = config_source
    view["env_backed"] = memory_only
    return view


def _unknown(path: str) -> str:
    names = [*SETTINGS, *READ_ONLY] if "." in path else \
        sorted({p.partition(".")[0] for p in SETTINGS})
    close = suggestion(path, names)
    return "unknown setting" + (f" (did you mean '{close}'?)" if close else "")


def flatten_patch(body: Any) -> dict[str, Any]:
    """A nested ``PUT`` body as {dotted path: value}; unknown fields are a 400
    naming each of them (with the closest known one)."""
    if not isinstance(body, dict):
        raise InvalidRequest("settings must be a JSON object")
    heads = {p.partition(".")[0] for p in SETTINGS}
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for head, value in body.items():
        if head in MAPS or head in READ_ONLY:
            changes[head] = value
        elif head not in heads:
            errors[head] = _unknown(head)
        elif not isinstance(value, dict):
            errors[head] = "must be an object"
        else:
            changes.update({f"{head}.{tail}": inner for tail, inner in value.items()})
    for path in list(changes):
        if path in READ_ONLY:
            del changes[path]
        elif path not in SETTINGS:
            errors[path] = _unknown(path)
    if errors:
        raise FieldErrors(errors)
    return changes


def field_errors(doc: dict[str, Any], changes: dict[str, Any],
                 is_native: Callable[[str], bool]) -> dict[str, str]:
    """Each change checked on its own against ``doc``, so every bad field is
    named in one answer rather than one per save."""
    errors: dict[str, str] = {}
    for path, value in changes.items():
        try:
            if path in MAPS:
                check_maps({path: value}, is_native)
            head = path.partition(".")[0]
            trial = {**doc, head: copy.deepcopy(doc.get(head))}
            apply_changes(trial, {path: value})
            parse_config(trial)
        except InvalidRequest as exc:
            where = exc.param or path
            errors[where] = exc.message.removeprefix(f"{where}: ")
        except ConfigError as exc:
            errors[exc.field] = str(exc).removeprefix(f"config field '{exc.field}': ")
    return errors


def check_maps(changes: dict[str, Any], is_native: Callable[[str], bool]) -> None:
    """Map entries must name native models, so a typo is refused, not ignored."""
    for path in MAPS & changes.keys():
        value = changes[path]
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidRequest(f"{path} must be an object of name → model", param=path)
        for name, target in value.items():
            where = f"{path}.{name}"
            if not name.strip():
                raise InvalidRequest(f"{path} has an empty name", param=path)
            if not isinstance(target, str):
                raise InvalidRequest(f"{where}: expected a model name (a string)", param=where)
            if not is_native(target):
                raise InvalidRequest(f"{where}: {target[:100]!r} is not a native model",
                                     param=where)


def apply_changes(data: dict[str, Any], changes: dict[str, Any]) -> None:
    """Write flat changes into a raw config document; ``None`` removes the field."""
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value


# -- the dashboard form ------------------------------------------------------------


def map_text(mapping: Mapping[str, str]) -> str:
    return "\n".join(f"{name} = {target}" for name, target in mapping.items())


def _parse_map(text: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, target = line.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ValueError(f"line {number}: write it as name = model")
        mapping[name.strip()] = target.strip()
    return mapping


def _from_text(setting: Setting, raw: str) -> Any:
    if setting.kind == "bool":
        return raw.lower() in ("on", "true", "1", "yes")
    if setting.kind == "choice":
        return raw
    if setting.kind == "map":
        return _parse_map(raw)
    if setting.kind == "text" and raw:
        return raw
    if not raw:
        if setting.nullable:
            return None
        raise ValueError("a value is required")
    try:
        return int(raw) if setting.kind == "int" else float(raw)
    except ValueError:
        noun = "a whole number" if setting.kind == "int" else "a number"
        raise ValueError(f"must be {noun}") from None


def parse_form(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every setting from a submitted form: (changes, errors by dotted path)."""
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for path, setting in SETTINGS.items():
        try:
            changes[path] = _from_text(setting, str(form.get(path, "")).strip())
        except ValueError as exc:
            errors[path] = str(exc)
    return changes, errors


def form_field_of(param: str) -> str:
    """The form field an error belongs to (``model_aliases.x`` → ``model_aliases``)."""
    for path in SETTINGS:
        if param == path or param.startswith(path + "."):
            return path
    return param
