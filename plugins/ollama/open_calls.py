"""The calls of a chat history that no tool message has answered yet.

A tool message answers the open call its ``tool_call_id`` names, else the
oldest open call of its tool, else the oldest open call. Each call is
indexed by id and by name in its order of arrival, so answering one of
thousands costs a lookup: a scan of them per tool message took minutes for
an agent history of 20,000 calls.
"""

from __future__ import annotations

from collections import OrderedDict

from ds2proxy.plugin_api import ToolCall

Index = dict[str, OrderedDict[int, None]]


class OpenCalls:
    def __init__(self) -> None:
        self._count = 0
        self._order: OrderedDict[int, ToolCall] = OrderedDict()
        self._by_id: Index = {}
        self._by_name: Index = {}

    def add(self, calls: list[ToolCall]) -> None:
        for call in calls:
            self._count += 1
            self._order[self._count] = call
            self._by_id.setdefault(call.id, OrderedDict())[self._count] = None
            self._by_name.setdefault(call.name, OrderedDict())[self._count] = None

    def take(self, call_id: str | None, name: str | None) -> ToolCall | None:
        """The call a tool message answers (no longer open), or None."""
        serial = (_first(self._by_id, call_id) or _first(self._by_name, name)
                  or next(iter(self._order), None))
        if serial is None:
            return None
        call = self._order.pop(serial)
        _drop(self._by_id, call.id, serial)
        _drop(self._by_name, call.name, serial)
        return call


def _first(index: Index, key: str | None) -> int | None:
    found = index.get(key) if key else None
    return next(iter(found)) if found else None


def _drop(index: Index, key: str, serial: int) -> None:
    entries = index[key]
    del entries[serial]
    if not entries:
        del index[key]
