"""The client's thinking switch, read from any of the body keys clients use.

Every dialect reads the same keys, so an OpenAI SDK that sends
``reasoning_effort``, Claude's ``thinking`` object and Gemini's
``thinkingConfig`` all steer the one upstream ``thinking_enabled`` flag.
"""

from __future__ import annotations

from typing import Any, Final

from ..errors import InvalidRequest

_ON_WORDS = frozenset({"enabled", "enable", "on", "true"})
_OFF_WORDS = frozenset({"disabled", "disable", "off", "false", "none"})
_AUTO_WORDS = frozenset({"auto", "adaptive", "default"})
_EFFORT_WORDS = frozenset({"minimal", "low", "medium", "high", "xhigh", "max"})

# A value that explicitly asks for the model default: stops the search.
_AUTO: Final = "auto"


def thinking_override(body: dict) -> bool | None:
    """True / False when the request decides, None to use the model default.

    The first key that holds a recognisable value wins; ``auto`` (and
    Claude's ``adaptive``) is recognisable and means the model default.
    """
    extra = _dict(body.get("extra_body"))
    candidates = (
        _switch(body.get("thinking")),
        _reasoning(body.get("reasoning")),
        _switch(extra.get("thinking")),
        _reasoning(extra.get("reasoning")),
        _effort(extra.get("reasoning_effort")),
        _effort(body.get("reasoning_effort")),
        _gemini_budget(body),
    )
    for decision in candidates:
        if decision is not None:
            return None if decision == _AUTO else decision
    return None


# Every word the switch reads; a family's own field holding another is a typo.
KNOWN_WORDS = _ON_WORDS | _OFF_WORDS | _AUTO_WORDS | _EFFORT_WORDS


def check_word(value: Any, field: str, documented: str) -> None:
    """A family's own thinking field (``reasoning_effort``, ``thinking.type`` …)
    holds a word the switch reads, or nothing: anything else is a 400 naming
    ``field`` (listing the family's ``documented`` words), not a silent model
    default. Case and surrounding blanks do not matter."""
    if value is None or _word(value) in KNOWN_WORDS:
        return
    raise InvalidRequest(f"'{field}' must be one of: {documented}", param=field)


def _word(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


def _switch(value: Any) -> bool | str | None:
    """``thinking``: a bool, an on/off word, or an object with such a ``type``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        return _switch(value.get("type"))
    word = _word(value)
    if word in _ON_WORDS:
        return True
    if word in _OFF_WORDS:
        return False
    return _AUTO if word in _AUTO_WORDS else None


def _effort(value: Any) -> bool | str | None:
    """An effort level is on; none / off words are off."""
    if _word(value) in _EFFORT_WORDS:
        return True
    return _switch(value) if isinstance(value, str) else None


def _reasoning(value: Any) -> bool | str | None:
    """``reasoning``: a bool, an effort, or an object with effort / type / enabled."""
    if not isinstance(value, dict):
        return _effort(value) if isinstance(value, str) else _switch(value)
    for decision in (_effort(value.get("effort")), _switch(value.get("type")),
                     _switch(value.get("enabled"))):
        if decision is not None:
            return decision
    return None


def _gemini_budget(body: dict) -> bool | str | None:
    """``generationConfig.thinkingConfig.thinkingBudget``: > 0 on, 0 off, -1 auto."""
    config = _dict(body.get("generationConfig") or body.get("generation_config"))
    thinking = _dict(config.get("thinkingConfig") or config.get("thinking_config"))
    budget = thinking.get("thinkingBudget", thinking.get("thinking_budget"))
    if isinstance(budget, bool) or not isinstance(budget, int | float):
        return None
    if budget < 0:
        return _AUTO
    return budget > 0


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
