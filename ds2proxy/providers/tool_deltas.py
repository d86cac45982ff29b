"""A provider's streamed ``tool_calls`` deltas → tool-call events.

OpenAI sends each call's index, id and function name in its first delta and
then argument pieces under the same index. Providers bend this in ways seen
in the wild, and each is read here:

* every call of a parallel batch at index 0, each under its own id and name
  (Ollama), or no index at all (older builds): a named delta under a new id
  starts a new call; a bare fragment continues the open one;
* an id on every fragment: the same id repeated (vLLM), or a fresh one per
  chunk without a name (some gateways): both continue the call;
* the name after the first delta: an empty name first, or arguments before
  the name (vLLM with some models, gateways bridging other APIs): the call
  starts once it has a name, with the arguments that came before it.

A call still without a name when it closes starts with an empty one, so its
arguments are not lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..canonical import ToolCallArgs, ToolCallEnd, ToolCallStart, TurnEvent
from .request import CUSTOM_INPUT


@dataclass(slots=True)
class _Call:
    ours: int
    ident: str = ""
    name: str = ""
    started: bool = False
    custom: bool = False
    got_arguments: bool = False
    held: list[str] = field(default_factory=list)  # before the start; a custom tool's text


class ToolCallDeltas:
    """The calls of one answer, assembled from their deltas."""

    def __init__(self, custom: set[str], text_parts: list[str]) -> None:
        self._custom = custom
        self._text_parts = text_parts  # every argument piece, for our own token count
        self._calls: list[_Call] = []
        self._by_index: dict[Any, _Call] = {}
        self._open: _Call | None = None

    @property
    def count(self) -> int:
        return len(self._calls)

    def feed(self, delta: dict[str, Any], out: list[TurnEvent]) -> None:
        """One entry of a delta's ``tool_calls``."""
        function = delta.get("function") or {}
        ident, name = delta.get("id") or "", function.get("name") or ""
        call = self._continued(delta.get("index"), ident, name)
        if call is None:
            self.close(out)
            call = _Call(len(self._calls), ident)
            self._calls.append(call)
            self._open = call
        elif ident and not call.ident:
            call.ident = ident
        if delta.get("index") is not None:
            self._by_index[delta["index"]] = call
        if name and not call.started:
            call.name = name
        pieces = function.get("arguments")
        if isinstance(pieces, dict):  # some gateways send the arguments as an object
            pieces = json.dumps(pieces, ensure_ascii=False)
        if isinstance(pieces, str) and pieces:
            self._text_parts.append(pieces)
            call.got_arguments = True
            call.held.append(pieces)
        if call.name and not call.started:
            self._start(call, out)
        elif call.started and not call.custom and call.held:
            out.extend(ToolCallArgs(call.ours, p) for p in call.held)
            call.held.clear()

    def close(self, out: list[TurnEvent]) -> None:
        """End the open call (started first if it never got a name)."""
        call, self._open = self._open, None
        if call is None:
            return
        if not call.started:
            self._start(call, out)
        if call.custom:
            out.append(ToolCallArgs(call.ours, _custom_input("".join(call.held))))
        out.append(ToolCallEnd(call.ours))

    def _start(self, call: _Call, out: list[TurnEvent]) -> None:
        call.started = True
        call.custom = call.name in self._custom
        out.append(ToolCallStart(call.ours, call.ident or f"call_{call.ours}", call.name,
                                 "custom" if call.custom else "function"))
        if not call.custom:
            out.extend(ToolCallArgs(call.ours, p) for p in call.held)
            call.held.clear()

    def _continued(self, index: Any, ident: str, name: str) -> _Call | None:
        """The call a delta continues (by its index, else the open one); None
        when it starts one. Only a delta that names a function can start one
        where a call already is: under an id other than that call's, or, with
        neither index nor ids to go by, after that call got its arguments."""
        call = self._by_index.get(index) if index is not None else self._open
        if call is None or not name:
            return call
        if ident and call.ident:
            return call if ident == call.ident else None
        if index is None and call.started and call.got_arguments:
            return None
        return call


def _custom_input(arguments: str) -> str:
    """A free-form tool's text: the ``input`` of the function it was sent as."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value.get(CUSTOM_INPUT, arguments) if isinstance(value, dict) else arguments
