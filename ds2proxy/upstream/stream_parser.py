"""The DeepSeek completion stream parser: SSE lines in, upstream events out.

Usage, one parser per turn (completion plus its continue rounds)::

    parser = StreamParser(thinking_enabled=True)
    for each HTTP response body (completion, then each chat/continue):
        parser.start_round()
        for line in body lines (without the newline):
            for event in parser.feed_line(line): ...
        if not parser.ended: the stream was cut (an upstream error)
        if not parser.should_continue: break
    for event in parser.finish(): ...   # on every end, errors included

Events (see :mod:`ds2proxy.upstream.events`): ``TextChunk(kind, text)``
with kind ``"thinking"`` or ``"answer"`` (THINK text is reported as thinking
even when thinking was not requested; the caller decides what to show),
``StatusChanged``, ``Ready``, ``Hint``, ``UpstreamFault`` and
``ContentFiltered`` (the refusal template, never emitted as text).

State after each line: ``status`` (last of WIP / FINISHED / INCOMPLETE /
CONTENT_FILTER from ``status``, ``quasi_status`` or the envelope),
``auto_continue``, ``request_message_id``, ``response_message_id``,
``upstream_usage`` (``accumulated_token_usage``), ``ended``,
``should_continue`` (spec §11.1) and :meth:`StreamParser.citations`.

The model is the spec's response tree (§9–§11): patches are applied to it and
text is the growth of THINK / RESPONSE fragments, tracked per fragment id
across rounds so a continue snapshot only yields what is new. Whatever cannot
be understood is logged and skipped; nothing here raises on stream content.

Most lines are path-less tokens appended to the newest fragment (or to the
flat field the cursor names): they take a fast path
(:mod:`ds2proxy.upstream.fast_tokens`) with exactly the general path's events;
``fast_path=False`` turns it off, so tests can compare both.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

import orjson

from .events import (
    ContentFiltered,
    Hint,
    Ready,
    StatusChanged,
    TextChunk,
    TextKind,
    UpstreamEvent,
    UpstreamFault,
)
from .fast_tokens import TokenFastPath
from .stream_text import (
    TextTracker,
    citations_of,
    cut_leak,
    fragments_of,
    tail_text,
    text_fields,
)
from .patch_ops import (
    APPEND,
    LEGACY_ANSWER,
    LEGACY_THINKING,
    Cursor,
    PatchError,
    apply,
    expand,
    text_of,
)

log = logging.getLogger("ds2proxy.upstream.stream")

FINISHED, INCOMPLETE, CONTENT_FILTER = "FINISHED", "INCOMPLETE", "CONTENT_FILTER"
TERMINAL = frozenset({FINISHED, INCOMPLETE, CONTENT_FILTER})
_QUIET_EVENTS = frozenset({"finish", "update_session", "title", "close"})
_TEXT_ROOTS = ("response/fragments", LEGACY_ANSWER, LEGACY_THINKING)
_DATA_OBJECT = "data: {"
_PATCH_KEYS = frozenset({"p", "o", "v"})


class StreamParser(TokenFastPath):
    """Parses the rounds of one DeepSeek turn; see the module docstring."""

    def __init__(self, *, thinking_enabled: bool = True, fast_path: bool = True) -> None:
        self.thinking_enabled = thinking_enabled
        self.fast_path = fast_path
        self.status: str | None = None
        self.auto_continue = False
        self.request_message_id: int | None = None
        self.response_message_id: int | None = None
        self.model_type: str | None = None
        self.upstream_usage: int | None = None
        # Where root-level legacy text goes; the kind of the last text emitted.
        self.current_kind: TextKind = "thinking" if thinking_enabled else "answer"
        self._tree: Any = {}
        self._cursor = Cursor()
        self._event = "message"
        self._ended = False
        # The answer is over (FINISHED, CONTENT_FILTER, an error frame or
        # finish()): nothing held back may still become part of a think tag.
        self._final = False
        self._filtered = False
        self._filter_pending = False
        self._tracker = TextTracker()
        self._leaked: set[Hashable] = set()
        self._unknown_types: set[str] = set()
        self._logged: set[Hashable] = set()
        self._init_fast()  # the token fast path's state (see fast_tokens)

    # -- rounds ---------------------------------------------------------------

    def start_round(self) -> None:
        """Call before each HTTP response body: a fresh cursor, no status yet.

        Each ``ready`` event does the same, so rounds spliced into one body
        (as some proxies store them) parse too.
        """
        self._cursor = Cursor()
        self._event = "message"
        self._ended = self._final = False
        self.status = None
        self.auto_continue = False

    def finish(self) -> list[UpstreamEvent]:
        """The answer is over, however it ended (no further round: a final
        status, rounds run out, EOF, a broken connection, an error): the
        events of the text held back until now, so the end of flat
        reasoning that might have been the start of a think tag is shown."""
        out: list[UpstreamEvent] = []
        if not self._final:
            self._settle()
            self._final = True
            self._sync_text(out)
        return out

    @property
    def ended(self) -> bool:
        """A terminal status (FINISHED, INCOMPLETE, CONTENT_FILTER) was seen this round."""
        return self._ended

    @property
    def should_continue(self) -> bool:
        """Spec §11.1: INCOMPLETE or auto_continue, never after FINISHED / CONTENT_FILTER."""
        if self.response_message_id is None or self.status in (FINISHED, CONTENT_FILTER):
            return False
        return self.status == INCOMPLETE or self.auto_continue

    @property
    def tree(self) -> Any:
        """The response state tree as patched so far (for diagnostics; do not mutate)."""
        self._settle()
        return self._tree

    # -- lines ----------------------------------------------------------------

    def feed_line(self, line: str) -> list[UpstreamEvent]:
        """Parse one line (no newline): ``event: x``, ``data: {…}``, ``: …`` or ``""``."""
        if line.endswith("\r"):
            line = line[:-1]
        if line.startswith(_DATA_OBJECT):  # the common case, never "[DONE]"
            return self._data(line[6:])
        if not line:
            self._event = "message"
            return []
        name, _, value = line.partition(":")
        if name == "event":
            self._event = value.strip() or "message"
            return []
        if name != "data":
            return []  # comments, id/retry fields, foreign lines
        value = value[1:] if value.startswith(" ") else value
        if value.strip() == "[DONE]":
            self._event = "message"
            return []
        return self._data(value)

    def _data(self, value: str) -> list[UpstreamEvent]:
        """One ``data:`` value (without the field name) under the pending event name."""
        out: list[UpstreamEvent] = []
        self._data_into(value, out)
        return out

    def _data_into(self, value: str, out: list[UpstreamEvent]) -> None:
        """:meth:`_data`, appending its events to ``out``."""
        event, self._event = self._event, "message"  # exactly one data line per event
        try:
            payload = orjson.loads(value)
        except orjson.JSONDecodeError:
            self._log_once(("json", event), "skipping undecodable %s frame", event)
            return
        if (self.fast_path and event == "message" and type(payload) is dict
                and self._fast_token(payload, out)):
            self.fast_tokens += 1
            return
        self._general(payload, event, out)

    def _fast_token(self, payload: dict, out: list[UpstreamEvent]) -> bool:
        """A token line the fast path takes: path-less ``{"v": text}``, or one
        naming its path and op (``{"p": …, "o": "APPEND", "v": text}``, as some
        streams write every token), moving the cursor as the general path's
        :func:`expand` would, then appending when that lands on the tail."""
        if len(payload) == 1:
            return self._append_to_tail(payload.get("v"), out)
        if not payload.keys() <= _PATCH_KEYS or type(payload.get("v")) is not str:
            return False
        self._cursor.advance(payload)  # the general path advances it alike
        return self._append_to_tail(payload["v"], out)

    def _general(self, payload: Any, event: str, out: list[UpstreamEvent]) -> None:
        """A decoded ``data:`` value the fast path did not take."""
        self._settle()
        self._dispatch(event, payload, out)
        if self._filter_pending:
            self._filter_pending = False
            out.append(ContentFiltered(self._template()))

    def _dispatch(self, event: str, payload: Any, out: list[UpstreamEvent]) -> None:
        if not isinstance(payload, dict):
            self._log_once(("shape", event), "skipping non-object %s frame", event)
        elif event == "ready":
            self.start_round()  # also right for rounds spliced into one body
            self._take_ids(payload)
            model = payload.get("model_type")
            self.model_type = model if isinstance(model, str) else self.model_type
            out.append(Ready(self.request_message_id, self.response_message_id, self.model_type))
        elif event == "hint":
            refusal = payload.get("type") == "error" or payload.get("clear_response") is True
            self._hint(Hint(str(payload.get("type") or ""), str(payload.get("content") or ""),
                            str(payload.get("finish_reason") or "")), refusal, out)
        elif event == "error" and "error" not in payload:  # the event names it: the body is
            out += self.finish()                              # the error, in any field
            out.append(UpstreamFault(_error_text(payload)))
        elif event in ("message", "error"):
            self._message(payload, out)
        elif event not in _QUIET_EVENTS:
            self._log_once(("event", event), "ignoring unknown event %r", event)

    def _hint(self, hint: Hint, refusal: bool, out: list[UpstreamEvent]) -> None:
        """A refusal before any answer text voids the round (the caller may
        ask again). After answer text it cuts the answer short (the web chat
        clears it): a fault, so the cut is not taken for a whole answer."""
        if not refusal or not any(kind == "answer" and text for _, kind, text
                                  in text_fields(self._tree, set(), ended=True)):
            out.append(hint)
            return
        out += self.finish()
        why = hint.finish_reason or hint.type or "hint"
        out.append(UpstreamFault(f"the upstream stopped the answer midway ({why})"
                                 + (f": {hint.content}" if hint.content else "")))

    def _message(self, payload: dict, out: list[UpstreamEvent]) -> None:
        if "error" in payload:
            out += self.finish()  # the text so far, then the fault that ends it
            out.append(UpstreamFault(_error_text(payload["error"])))
            return
        if payload.get("code") == "content_filter":
            self._set_status(CONTENT_FILTER, out)
            return
        self._take_ids(payload)
        if "v" in payload:
            try:
                for path, op, value in expand(payload, self._cursor):
                    self._step(path, op, value, out)
            except PatchError as exc:
                self._log_once(("patch", str(exc)), "skipping patch: %s", exc)

    # -- tree -----------------------------------------------------------------

    def _step(self, path: str, op: str, value: Any, out: list[UpstreamEvent]) -> None:
        """Apply one elementary step, then report status and text changes."""
        if not path and not (isinstance(value, dict) and "response" in value):
            text = text_of(value)
            if text is None:
                raise PatchError("root SET without a response")
            path, op, value = _legacy_field(self.current_kind), APPEND, text
        try:
            self._tree = apply(self._tree, path, op, value)
        except PatchError as exc:
            self._tail = None  # a failed walk may have added nodes: re-check before trusting it
            self._log_once(("apply", path, str(exc)), "skipping %s on %r: %s", op, path, exc)
            return
        self._track(path, value, out)
        if path in ("", "response") or path.startswith(_TEXT_ROOTS):
            self._sync_text(out)

    def _track(self, path: str, value: Any, out: list[UpstreamEvent]) -> None:
        if not path:
            path, value = "response", value["response"]
        if path == "response" and isinstance(value, dict):
            for name in ("status", "message_id", "auto_continue", "accumulated_token_usage"):
                if name in value:
                    self._field(name, value[name], out)
        elif path.startswith("response/"):
            self._field(path[len("response/"):], value, out)
        elif path in ("status", "quasi_status"):
            self._field(path, value, out)

    def _field(self, name: str, value: Any, out: list[UpstreamEvent]) -> None:
        if name in ("status", "quasi_status") and isinstance(value, str):
            self._set_status(value, out)
        elif name == "auto_continue" and isinstance(value, bool):
            self.auto_continue = value
        elif name == "accumulated_token_usage" and isinstance(value, int):
            self.upstream_usage = value
        elif name == "message_id" and isinstance(value, int):
            self.response_message_id = value

    def _set_status(self, status: str, out: list[UpstreamEvent]) -> None:
        if status in (FINISHED, CONTENT_FILTER) and not self._final:
            # Reasoning held back as a possible tag, before the status. Not on
            # INCOMPLETE: the continue round may finish the tag (finish() is
            # called when no round follows).
            self._final = True
            self._sync_text(out)
        if status != self.status:
            self.status = status
            out.append(StatusChanged(status))
        if status in TERMINAL:
            self._ended = True
        if status == CONTENT_FILTER and not self._filtered:
            self._filtered = self._filter_pending = True

    def _sync_text(self, out: list[UpstreamEvent]) -> None:
        """Emit what every text field gained since it was last emitted."""
        self._tail = None
        if self._filtered:
            return
        keys: dict[Hashable, str | None] = {}  # each key's text; None: more than one
        for key, kind, text in text_fields(self._tree, self._unknown_types, ended=self._final):
            keys[key] = text if key not in keys else None
            delta = self._tracker.delta(key, text)
            if not delta or key in self._leaked:
                continue
            if kind == "answer":
                delta, leaked = cut_leak(delta)
                if leaked:
                    self._leaked.add(key)
                    if not delta:
                        continue
            out.append(TextChunk(kind, delta))
            self.current_kind = kind
        for ftype in self._unknown_types:
            self._log_once(("type", ftype), "ignoring fragments of unknown type %r", ftype)
        self._tail = self._trusted(tail_text(self._tree, self._cursor.path), keys)

    # -- results --------------------------------------------------------------

    def citations(self) -> list[tuple[int, str, str]]:
        """``(N, url, title)`` for each ``[reference:N]`` target of the answer (§10.5)."""
        self._settle()
        return citations_of(self._tree)

    def _template(self) -> str:
        self._settle()
        for frag in fragments_of(self._tree):
            if isinstance(frag, dict) and frag.get("type") == "TEMPLATE_RESPONSE":
                return str(frag.get("content") or "")
        return ""

    def _take_ids(self, payload: dict) -> None:
        for name in ("request_message_id", "response_message_id"):
            if isinstance(payload.get(name), int):
                setattr(self, name, payload[name])

    def _log_once(self, key: Hashable, msg: str, *args: Any) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(msg, *args)


def _legacy_field(kind: TextKind) -> str:
    return LEGACY_THINKING if kind == "thinking" else LEGACY_ANSWER


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        for key in ("message", "msg", "detail"):
            if isinstance(error.get(key), str) and error[key]:
                return error[key]
        return orjson.dumps(error).decode()
    return str(error) or "upstream error"
