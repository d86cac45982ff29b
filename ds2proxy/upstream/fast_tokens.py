"""The stream parser's token fast path: a path-less ``{"v": text}`` line
appended to the newest fragment, without walking the response tree.

:class:`TokenFastPath` is the part of :class:`~ds2proxy.upstream.stream_parser.StreamParser`
that handles those lines (nearly every line of a stream): it yields exactly
the events of the general path (the tests compare both, line by line and
read by read) and defers joining the tokens into the fragment until
something reads or patches the tree, so a long answer costs the same per
token as a short one.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson

from .events import TextChunk, TextKind, UpstreamEvent
from .stream_text import LEAK_MARKER, TextTracker, fragments_of
from .patch_ops import APPEND, TAIL_CONTENT, Cursor

_DATA_OBJECT = "data: {"


class TokenFastPath:
    """Fast-path state and methods; the general path is the subclass's."""

    fast_path: bool
    answer_runs: bool
    current_kind: TextKind
    fast_tokens: int
    _tree: Any
    _cursor: Cursor
    _event: str
    _filtered: bool
    _tracker: TextTracker
    _leaked: set[Hashable]
    # The last fragment as of the last full text sync, if tokens may take
    # the fast path into it: (fragment, tracker key, kind).
    _tail: tuple[dict, Hashable, TextKind] | None
    # Tokens the fast path took, not yet joined into the tail's content.
    _pending: list[str]
    # The tail whose tree checks passed (they hold until a settle or patch).
    _checked: tuple[dict, Hashable, TextKind] | None

    def feed_line(self, line: str) -> list[UpstreamEvent]:
        raise NotImplementedError

    def _data_into(self, value: str, out: list[UpstreamEvent]) -> None:
        raise NotImplementedError

    def _general(self, payload: Any, event: str, out: list[UpstreamEvent]) -> None:
        raise NotImplementedError

    def feed_lines(self, lines: list[str]) -> list[UpstreamEvent | list[str]]:
        """The events of several lines, in order (one call per read).

        Token lines are taken inline while the fast path holds: its checks
        are of state that only a line off the fast path can change, so they
        are made once per run of tokens, not per token. With
        ``answer_runs`` set, consecutive answer tokens come as one list of
        their texts instead of a TextChunk each (for a consumer that takes
        a run in one go).
        """
        out: list[UpstreamEvent | list[str]] = []
        append, pending = out.append, self._pending
        tail = self._fast_tail()
        run: list[str] = []
        taken = 0
        for line in lines:
            # A token line goes straight to the JSON step ("\r" is JSON whitespace).
            if not line.startswith(_DATA_OBJECT):
                events = self.feed_line(line)
                if events:
                    out += events
                tail = self._fast_tail()
                continue
            if tail is None:
                self._data_into(line[6:], out)
                tail = self._fast_tail()
                continue
            try:
                payload = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                self._data_into(line[6:], out)  # logs it, as any line
                tail = self._fast_tail()
                continue
            if type(payload) is dict and len(payload) == 1:
                value = payload.get("v")
                kind = tail[2]
                if type(value) is str and not (kind == "answer" and LEAK_MARKER in value):
                    if value:
                        pending.append(value)
                        self.current_kind = kind
                        taken += 1
                        if kind != "answer" or not self.answer_runs:
                            append(TextChunk(kind, value))
                        elif out and out[-1] is run:
                            run.append(value)
                        else:
                            run = [value]
                            append(run)
                    continue
            self._event = "message"
            self._general(payload, "message", out)
            tail = self._fast_tail()
        self.fast_tokens += taken
        return out

    def _fast_tail(self) -> tuple[dict, Hashable, TextKind] | None:
        """The tail fragment when a path-less ``{"v": text}`` line would take
        the fast path now (see :meth:`_append_to_tail`), else None."""
        cursor, tail = self._cursor, self._tail
        if (not self.fast_path or tail is None or self._event != "message"
                or cursor.path != TAIL_CONTENT or cursor.op not in (None, APPEND)
                or self._filtered):
            return None
        if tail is not self._checked:
            frag, key, _ = tail
            frags = fragments_of(self._tree)
            content = frag.get("content")
            if (not frags or frags[-1] is not frag or not isinstance(content, str)
                    or not self._tracker.holds(key, content) or key in self._leaked):
                return None
            self._checked = tail
        return tail

    def _append_to_tail(self, value: Any, out: list[UpstreamEvent]) -> bool:
        """The fast path of ``{"v": text}``: False (nothing done) unless it applies.

        It applies when the step resolves to APPEND on the newest fragment's
        content, that fragment is still the THINK / RESPONSE one the last full
        sync saw (and the only one with its key), the tracker has emitted its
        text exactly, and no filter or leaked marker is involved. Every other
        field was fully synced then and cannot have changed, so this
        fragment's growth is the whole event, as the general path finds it.
        """
        cursor, tail = self._cursor, self._tail
        if (tail is None or type(value) is not str or cursor.path != TAIL_CONTENT
                or cursor.op not in (None, APPEND) or self._filtered):
            return False
        frag, key, kind = tail
        if kind == "answer" and LEAK_MARKER in value:
            return False
        if tail is not self._checked:
            frags = fragments_of(self._tree)
            content = frag.get("content")
            if (not frags or frags[-1] is not frag or not isinstance(content, str)
                    or not self._tracker.holds(key, content) or key in self._leaked):
                return False
            self._checked = tail
        if value:
            self._pending.append(value)
            out.append(TextChunk(kind, value))
            self.current_kind = kind
        return True

    def _settle(self) -> None:
        """Join the fast path's pending tokens into the tail fragment's content.

        Until then the fragment holds the text of the last settle, which is
        what the tracker holds too, so the fast path's checks still see the
        same objects; everything that reads or patches the tree settles first.
        """
        self._checked = None
        if not self._pending:
            return
        assert self._tail is not None
        frag, key, _ = self._tail
        text = "".join([frag["content"], *self._pending])
        self._pending.clear()
        frag["content"] = text
        self._tracker.advance(key, text)
