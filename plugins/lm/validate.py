"""The LM v2 body rules, checked before any account is leased so a bad
request costs nothing and the 400 names the offending field."""

from __future__ import annotations

from typing import Any

from ds2proxy.errors import InvalidRequest

# field → (low, high, low inclusive); high is always inclusive.
RANGES: dict[str, tuple[float, float, bool]] = {
    "temperature": (0.0, 1.0, False),
    "top_p": (0.0, 1.0, True),
    "penalty_score": (1.0, 2.0, True),
    "frequency_penalty": (-2.0, 2.0, True),
    "presence_penalty": (-2.0, 2.0, True),
}
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
    for name, bounds in RANGES.items():
        _check_range(body, name, *bounds)
    _check_int(body, "top_k", minimum=0)
    _check_int(body, "max_completion_tokens", minimum=1)
    _check_bool(body, "stream")
    _check_stream_options(body.get("stream_options"))


def validate_messages(value: Any) -> None:
    """Non-empty; after any leading system messages, an odd number of
    messages whose roles go user (or function), assistant, user …"""
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'messages' must be a non-empty list", param="messages")
    roles = [m.get("role") if isinstance(m, dict) else None for m in value]
    start = 0
    while start < len(roles) and roles[start] in INSTRUCTION_ROLES:
        start += 1
    turns = roles[start:]
    for offset, role in enumerate(turns):
        assistant_turn = offset % 2 == 1
        if (role == "assistant") if assistant_turn else (role in USER_SIDE):
            continue
        expected = "assistant" if assistant_turn else "user (or function)"
        raise InvalidRequest(f"messages[{start + offset}].role must be {expected}, got "
                             f"{role!r}: roles alternate user, assistant, user, …",
                             param="messages")
    if len(turns) % 2 == 0:
        raise InvalidRequest("'messages' must hold an odd number of conversation messages, "
                             "ending with the current user message", param="messages")


def _present(body: dict[str, Any], name: str) -> bool:
    return body.get(name) is not None


def _check_range(body: dict[str, Any], name: str, low: float, high: float,
                 low_inclusive: bool) -> None:
    if not _present(body, name):
        return
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"'{name}' must be a number", param=name)
    above_low = value >= low if low_inclusive else value > low
    if not (above_low and value <= high):
        bracket = "[" if low_inclusive else "("
        raise InvalidRequest(f"'{name}' must be in {bracket}{low:g}, {high:g}]; got {value}",
                             param=name)


def _check_int(body: dict[str, Any], name: str, *, minimum: int) -> None:
    if not _present(body, name):
        return
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"'{name}' must be an integer >= {minimum}; got {value!r}",
                             param=name)


def _check_bool(body: dict[str, Any], name: str) -> None:
    if _present(body, name) and not isinstance(body[name], bool):
        raise InvalidRequest(f"'{name}' must be true or false", param=name)


def _check_stream_options(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options")
    if value.get("include_usage") is not None and not isinstance(value["include_usage"], bool):
        raise InvalidRequest("'stream_options.include_usage' must be true or false",
                             param="stream_options.include_usage")
