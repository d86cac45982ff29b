"""The stream parser's token fast path: a path-less ``{"v": text}`` line
appended to the newest fragment (or, in the older stream form, to the flat
``response/content`` / ``response/thinking_content`` field the cursor
names), without walking the response tree.

:class:`TokenFastPath` is the part of :class:`~ds2proxy.upstream.stream_parser.StreamParser`
that handles those lines (nearly every line of a stream): it yields exactly
the events of the general path (the tests compare both, line by line and
read by read) and defers joining the tokens into the fragment until
something reads or patches the tree, so a long answer costs the same per
token as a short one.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import orjson

from .events import TextChunk, TextKind, UpstreamEvent
from .stream_text import LEAK_MARKER, SPILL, Tail, TextTracker, fragments_of
from .patch_ops import APPEND, LEGACY_ANSWER, LEGACY_THINKING, TAIL_CONTENT, Cursor
from .think_tags import Tags, step, tags_of

_TOKEN_LINE = 'data: {"v":"'
# Compact token lines, each maybe followed by a blank line (no raw newline
# or control character can occur in a JSON string, so neither splits one).
_TOKEN_RUN = re.compile(
    r'(?:data: \{"v":"[^"\\\x00-\x1f]*+(?:\\.[^"\\\x00-\x1f]*+)*+"\}\n\n?)+')
_RUN_JOINT = '}\ndata: {"v":'
_TEXT_JOINT = '"}\ndata: {"v":"'


def run_texts(run: str) -> list[str] | None:
    """The texts of a run of token lines matched by ``_TOKEN_RUN``, decoded
    as one JSON array; None when one of them is not valid JSON (a bad
    escape, a lone surrogate), which each line's own decode would refuse.
    ASCII without a backslash decodes to itself: it is only split."""
    if "\n\n" in run:
        run = run.replace("\n\n", "\n")
    if run.isascii() and "\\" not in run:
        return run[12:-3].split(_TEXT_JOINT)
    try:
        texts = orjson.loads("[" + run[11:-2].replace(_RUN_JOINT, ",") + "]")
    except orjson.JSONDecodeError:
        return None
    return texts


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
    # The text field tokens may take the fast path into, as of the last
    # full text sync.
    _tail: Tail | None
    # Tokens the fast path took, not yet joined into the tail's text.
    _pending: list[str]
    # The tail whose tree checks passed (they hold until a settle or patch).
    _checked: Tail | None
    _final: bool
    # Flat reasoning: where its think-tag split stands, and what the fast
    # path added to the reasoning and to the answer it shows, not yet settled.
    _tags: Tags | None
    _shown: tuple[list[str], list[str]]

    def _init_fast(self) -> None:
        self._tail = self._checked = self._tags = None
        self._pending = []
        self._shown = ([], [])
        self.fast_tokens = 0  # token lines the fast path took (tests check it ran)
        self.answer_runs = False  # feed_lines gives answer tokens as one list of texts

    def feed_line(self, line: str) -> list[UpstreamEvent]:
        raise NotImplementedError

    def feed_lines(self, lines: list[str]) -> list[UpstreamEvent | list[str]]:
        """The events of several lines, in order (one call per read).

        While the fast path holds, a run of compact token lines
        (``data: {"v":"…"}``, each maybe followed by the blank line that
        ends its event) is taken whole: one pattern match over the lines
        joined and one JSON decode of all their texts, its checks made once
        for the run (they are of state only a line off the fast path can
        change). Any other line, or a run that does not decode or holds a
        leaked marker, goes line by line, exactly as :meth:`feed_line`.
        With ``answer_runs`` set, consecutive answer tokens come as one
        list of their texts instead of a TextChunk each (for a consumer
        that takes a run in one go).
        """
        out: list[UpstreamEvent | list[str]] = []
        tail = self._fast_tail()
        block, at = "", -1  # the lines joined (once a run is tried); line i's offset in it
        single_until = 0  # lines before this go one by one (their run was refused)
        i, count = 0, len(lines)
        while i < count:
            line = lines[i]
            if tail is not None and i >= single_until and line.startswith(_TOKEN_LINE):
                if at < 0:
                    block, at = "\n".join(lines) + "\n", sum(map(len, lines[:i])) + i
                match = _TOKEN_RUN.match(block, at)
                if match is not None:
                    text = match.group()
                    texts = run_texts(text)
                    if texts is not None and self._take_run(texts, tail, out):
                        at = match.end()
                        i += text.count("\n")
                        continue
                    single_until = i + text.count("\n")
            events = self.feed_line(line)
            if events:
                out += events
            tail = self._fast_tail()
            if at >= 0:
                at += len(line) + 1
            i += 1
        return out

    def _take_run(self, texts: list[str], tail: Tail,
                  out: list[UpstreamEvent | list[str]]) -> bool:
        """A run of token texts into the tail, as its lines one by one would
        go; False (nothing done) when a text holds the tail's guard (a
        leaked marker in answer text) or one goes the general way."""
        if tail.flat:
            return self._take_flat_run(texts, out)
        kind, guard = tail.kind, tail.guard
        if guard:
            joined = "\n".join(texts)
            if any(g in joined for g in guard):
                return False
        if "" in texts:
            texts = [text for text in texts if text]
            if not texts:
                return True
        self._pending += texts
        self.current_kind = kind
        self.fast_tokens += len(texts)
        self._emit_run(kind, texts, out)
        return True

    def _emit_run(self, kind: TextKind, texts: list[str],
                  out: list[UpstreamEvent | list[str]]) -> None:
        if kind != "answer" or not self.answer_runs:
            out += [TextChunk(kind, text) for text in texts]
        elif out and type(out[-1]) is list:
            out[-1] += texts
        else:
            out.append(texts)

    def _take_flat_run(self, texts: list[str], out: list[UpstreamEvent | list[str]]) -> bool:
        """:meth:`_take_run` into flat reasoning: every text's step first
        (nothing done unless all apply), then their events in order."""
        tags = self._tags
        assert tags is not None
        if tags.plain and "<" not in "".join(texts):  # all to one side, as they are
            kind: TextKind = "answer" if tags.closed else "thinking"
            if kind == "answer" and LEAK_MARKER in "\n".join(texts):
                return False
            texts = [text for text in texts if text]
            self._pending += texts
            self.fast_tokens += len(texts)
            if texts:
                self._shown[tags.closed].extend(texts)
                self._emit_run(kind, texts, out)
                self.current_kind = kind
            return True
        steps = []
        for text in texts:
            done = step(tags, text)
            if done is None or LEAK_MARKER in done[2]:
                return False
            tags = done[0]
            steps.append(done[1:])
        self._tags = tags
        self._pending += texts
        self.fast_tokens += len(texts)
        for head, spill in steps:
            self._show(head, spill, out, runs=True)
        return True

    def _show(self, head: str, spill: str, out: list, *, runs: bool = False) -> None:
        """The events of what a flat reasoning token added to the reasoning
        and to the answer after ``</think>`` (in the general path's order)."""
        if head:
            self._shown[0].append(head)
            out.append(TextChunk("thinking", head))
            self.current_kind = "thinking"
        if spill:
            self._shown[1].append(spill)
            if runs:
                self._emit_run("answer", [spill], out)
            else:
                out.append(TextChunk("answer", spill))
            self.current_kind = "answer"

    def _fast_tail(self) -> Tail | None:
        """The tail when a path-less ``{"v": text}`` line would take the fast
        path now (see :meth:`_append_to_tail`), else None."""
        cursor, tail = self._cursor, self._tail
        if (not self.fast_path or tail is None or self._event != "message"
                or cursor.path != tail.path or cursor.op not in (None, APPEND)
                or self._filtered):
            return None
        if tail is not self._checked and not self._check_tail(tail):
            return None
        return tail

    def _trusted(self, tail: Tail | None, texts: dict[Hashable, str | None]) -> Tail | None:
        """``tail`` when tokens may take the fast path into it: its text is
        the only one with its key and, for flat reasoning, what it shows is
        exactly what was emitted (so its think-tag state says what a token
        adds to both)."""
        self._tags = None
        if tail is None or not tail.flat:
            return tail if tail is not None and texts.get(tail.key) is not None else None
        head, spill = texts.get(LEGACY_THINKING), texts.get(SPILL)
        if (head is None or spill is None or SPILL in self._leaked
                or not self._tracker.equals(LEGACY_THINKING, head)
                or not self._tracker.equals(SPILL, spill)):
            return None
        raw = tail.node[tail.field]
        answer = tail.node.get(LEGACY_ANSWER[len("response/"):])
        self._tags = tags_of(raw, self._final or (isinstance(answer, str) and answer != ""))
        if self._tags is None:
            return None
        self._tracker.advance(tail.key, raw)  # the raw text, as it stands
        return tail

    def _check_tail(self, tail: Tail) -> bool:
        """Whether a new tail is still where its path leads (the newest
        fragment, or the tree's response object), its text is what the
        tracker emitted and no marker leaked in it; remembered when so
        (callers skip this for the tail already checked)."""
        node, key = tail.node, tail.key
        if tail.path == TAIL_CONTENT:
            frags = fragments_of(self._tree)
            where = frags[-1] if frags else None
        else:
            where = self._tree.get("response") if type(self._tree) is dict else None
        text = node.get(tail.field)
        if (where is not node or not isinstance(text, str)
                or not self._tracker.holds(key, text) or key in self._leaked):
            return False
        self._checked = tail
        return True

    def _append_to_tail(self, value: Any, out: list[UpstreamEvent]) -> bool:
        """The fast path of ``{"v": text}``: False (nothing done) unless it applies.

        It applies when the step resolves to APPEND on the tail's path (the
        newest fragment's content, or a flat legacy field), the tail is still
        the THINK / RESPONSE text the last full sync saw (and the only one
        with its key), the tracker has emitted its text exactly, and no
        filter, leaked marker or guard is involved. Every other field was
        fully synced then and cannot have changed, so the tail's growth is
        the whole event, as the general path finds it.
        """
        cursor, tail = self._cursor, self._tail
        if (tail is None or type(value) is not str or cursor.path != tail.path
                or cursor.op not in (None, APPEND) or self._filtered):
            return False
        if tail.flat:
            return self._append_flat(tail, value, out)
        kind = tail.kind
        for guard in tail.guard:
            if guard in value:
                return False
        if tail is not self._checked and not self._check_tail(tail):
            return False
        if value:
            self._pending.append(value)
            out.append(TextChunk(kind, value))
            self.current_kind = kind
        return True

    def _append_flat(self, tail: Tail, value: str, out: list[UpstreamEvent]) -> bool:
        """:meth:`_append_to_tail` into flat reasoning, by its think-tag step."""
        done = step(self._tags, value) if self._tags is not None else None
        if (done is None or LEAK_MARKER in done[2]
                or tail is not self._checked and not self._check_tail(tail)):
            return False
        self._tags = done[0]
        self._pending.append(value)
        self._show(done[1], done[2], out)
        return True

    def _settle(self) -> None:
        """Join the fast path's pending tokens into the tail's text.

        Until then the tail holds the text of the last settle, which is
        what the tracker holds too, so the fast path's checks still see the
        same objects; everything that reads or patches the tree settles first.
        """
        self._checked = None
        if not self._pending:
            return
        tail = self._tail
        assert tail is not None
        node, field = tail.node, tail.field
        added = "".join(self._pending)
        self._pending.clear()
        text = node[field] + added
        node[field] = text
        self._tracker.advance(tail.key, text)
        for key, parts in zip((LEGACY_THINKING, SPILL), self._shown):
            if parts:  # flat reasoning: what it shows grew by what was emitted
                self._tracker.extend(key, "".join(parts))
                parts.clear()
