"""Which tools may be called, and matching the names the model writes to them.

Models invent prefixes and spellings (``mcp.search_web``, ``Search-Web``)
for a declared ``search_web``; such a call takes the declared spelling. A
name that matches no allowed tool is rejected, never passed through.
"""

from __future__ import annotations

from collections.abc import Callable

from ds2proxy.canonical import ToolChoice, ToolSpec


def allowed_tools(tools: list[ToolSpec], choice: ToolChoice) -> list[ToolSpec]:
    """The declared tools narrowed by ``tool_choice``."""
    if choice.mode == "none":
        return []
    if choice.mode == "forced":
        return [t for t in tools if t.name == choice.name]
    if choice.allowed is not None:
        return [t for t in tools if t.name in choice.allowed]
    return list(tools)


def _alnum(name: str) -> str:
    """Letters and digits of any script, case-folded: an ASCII-only form
    reduced ``get_天气`` and ``get_查询`` alike to ``get``."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def _after_dot(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower()


def _same(name: str) -> str:
    return name


# (form of the written name, form of the declared name), tried in order.
_STEPS: tuple[tuple[Callable[[str], str], Callable[[str], str]], ...] = (
    (_same, _same),
    (str.lower, str.lower),
    (_after_dot, str.lower),
    (_alnum, _alnum),
    (lambda n: _alnum(_after_dot(n)), _alnum),
)


class NameMatcher:
    """Resolves a written tool name to one allowed tool, tolerantly. A step
    that fits several tools decides nothing (the call is not sent to a guess)."""

    def __init__(self, tools: list[ToolSpec]) -> None:
        self._tools = [t for t in tools if t.name]

    def resolve(self, written: str) -> ToolSpec | None:
        for written_form, declared_form in _STEPS:
            key = written_form(written.strip())
            if not key:
                continue
            fits = [tool for tool in self._tools if declared_form(tool.name) == key]
            if fits:
                return fits[0] if len({tool.name for tool in fits}) == 1 else None
        return None
