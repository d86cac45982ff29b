"""Which tools may be called, and matching the names the model writes to them.

Models invent prefixes and spellings (``mcp.search_web``, ``Search-Web``)
for a declared ``search_web``; such a call takes the declared spelling. A
name that matches no allowed tool is rejected, never passed through.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ds2proxy.canonical import ToolChoice, ToolSpec

_NOT_ALNUM = re.compile(r"[^0-9a-z]")


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
    return _NOT_ALNUM.sub("", name.lower())


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
    """Resolves a written tool name to one allowed tool, tolerantly."""

    def __init__(self, tools: list[ToolSpec]) -> None:
        self._tools = [t for t in tools if t.name]

    def resolve(self, written: str) -> ToolSpec | None:
        for written_form, declared_form in _STEPS:
            key = written_form(written.strip())
            if not key:
                continue
            for tool in self._tools:
                if declared_form(tool.name) == key:
                    return tool
        return None
