"""The LM v2 body rules, checked before any account is leased so a bad
request costs nothing and the 400 names the offending field."""

from __future__ import annotations

from typing import Any

from ds2proxy.plugin_api import InvalidRequest
from ds2proxy.dialects.validate import INT32_MAX, Bounds, Field, boolean, read_fields, string

# The documented ranges; temperature excludes 0.
FIELDS = (
    Field("temperature", "number", Bounds(0, 1, low_open=True)),
    Field("top_p", "number", Bounds(0, 1)),
    Field("penalty_score", "number", Bounds(1, 2)),
    Field("frequency_penalty", "number", Bounds(-2, 2)),
    Field("presence_penalty", "number", Bounds(-2, 2)),
    Field("top_k", "integer", Bounds(0, INT32_MAX)),
    Field("max_completion_tokens", "integer", Bounds(1, INT32_MAX)),
    Field("stream", "boolean"),
    Field("stream_options", "object"),
)
USER_SIDE = frozenset({"user", "function", "tool"})
# Leading instructions are not part of the alternating conversation.
INSTRUCTION_ROLES = frozenset({"system", "developer"})


def validate_body(body: dict[str, Any]) -> None:
    """Raise InvalidRequest (param = the field) for the first rule broken."""
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise InvalidRequest("'model' must be a non-empty string (or left out for the "
                             "default model)", param="model")
    validate_messages(body.get("messages"))
    read_fields(body, FIELDS)
    boolean((body.get("stream_options") or {}).get("include_usage"),
            "stream_options.include_usage")


def validate_messages(value: Any) -> None:
    """Non-empty; after any leading system messages, an odd number of
    messages whose roles go user (or function), assistant, user …"""
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'messages' must be a non-empty list", param="messages")
    roles = [_role(m, i) for i, m in enumerate(value)]
    start = 0
    while start < len(roles) and roles[start] in INSTRUCTION_ROLES:
        start += 1
    turns = roles[start:]
    for offset, role in enumerate(turns):
        assistant_turn = offset % 2 == 1
        if (role == "assistant") if assistant_turn else (role in USER_SIDE):
            continue
        expected = "assistant" if assistant_turn else "user (or function)"
        raise InvalidRequest(f"messages[{start + offset}].role must be {expected}: roles "
                             "alternate user, assistant, user, …", param="messages")
    if len(turns) % 2 == 0:
        raise InvalidRequest("'messages' must hold an odd number of conversation messages, "
                             "ending with the current user message", param="messages")


def _role(message: Any, index: int) -> str | None:
    """A message's role, checked to be a string (never hashed or shown raw)."""
    if not isinstance(message, dict):
        raise InvalidRequest(f"messages[{index}] must be an object", param="messages")
    return string(message.get("role"), f"messages[{index}].role")
