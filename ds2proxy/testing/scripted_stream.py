"""Render a :class:`Scripted` turn as the SSE rounds the real upstream would send.

The writer keeps the same model the client rebuilds (the fragments list and
the sticky cursor of spec §9), so it can omit ``p`` and ``o`` exactly where
the real stream does, and so a continue round's root snapshot holds every
fragment's text so far.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from .scripts import HINT_TEXT, Scripted, last_user_text

MARKER = re.compile(r"\[reference:([0-9]{1,9})\]")
_MARKER_SPLIT = re.compile(r"(\[reference:[0-9]{1,9}\])")
CONTENT = "response/fragments/-1/content"
FLAT_FIELDS = {"THINK": "thinking_content", "RESPONSE": "content"}  # the older form (§10.8)
COMMENT = b": \n\n"
TIP_TEXT = "本回答由 AI 生成，内容仅供参考，请仔细甄别。"
THINK, RESPONSE, CITE, SEARCH = "THINK", "RESPONSE", "CITE", "SEARCH"


@dataclass(frozen=True)
class TurnContext:
    """What the completion request and the session decide about the stream."""

    request_message_id: int
    response_message_id: int
    model_type: str = "default"
    thinking_enabled: bool = True
    search_enabled: bool = False
    prompt: str = ""
    first_turn: bool = True


@dataclass(frozen=True)
class Step:
    kind: str  # THINK, RESPONSE, CITE (a ``[reference:N]`` marker) or SEARCH
    text: str = ""


def sse(data: Any, event: str | None = None) -> bytes:
    """One SSE event: optional ``event:`` line, one compact ``data:`` line, blank line."""
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def render(script: Scripted, ctx: TurnContext) -> list[list[bytes]]:
    """The rounds of the turn: the completion's, then one per continue."""
    writer = _Writer(script, ctx)
    if script.hint:
        return [writer.hint_round()]
    segments = _segments(plan(script, ctx), script.cuts)
    return [writer.round(seg, index, last=index == len(segments) - 1)
            for index, seg in enumerate(segments)]


def plan(script: Scripted, ctx: TurnContext) -> list[Step]:
    """The turn as steps: thinking chunks, the search, answer chunks and markers."""
    steps = []
    if ctx.thinking_enabled:
        steps += [Step(THINK, c) for c in _chunks(script.thinking, script.chunk_size)]
    if script.search and not script.flat:
        steps.append(Step(SEARCH))
    for chunk in _chunks(script.answer, script.chunk_size, split_markers=True):
        cite = MARKER.fullmatch(chunk) and not script.flat  # flat: a marker is plain text
        steps.append(Step(CITE if cite else RESPONSE, chunk))
    return steps


def _chunks(text: str | Sequence[str], size: int, *, split_markers: bool = False) -> list[str]:
    """Exact chunks as given, or a text cut every ``size`` characters; markers kept whole."""
    given = isinstance(text, str)
    pieces = [text] if given else list(text)
    if split_markers:
        pieces = [p for piece in pieces for p in _MARKER_SPLIT.split(piece)]
    out: list[str] = []
    for piece in pieces:
        if given and not MARKER.fullmatch(piece):
            out += [piece[i:i + size] for i in range(0, len(piece), max(1, size))]
        elif piece:
            out.append(piece)
    return out


def _segments(steps: list[Step], cuts: list[int]) -> list[list[Step]]:
    """Split the steps after the n-th text chunk for each cut (SEARCH is not a chunk)."""
    segments: list[list[Step]] = [[]]
    counted = 0
    pending = [c for c in cuts if c > 0]
    for step in steps:
        segments[-1].append(step)
        counted += step.kind != SEARCH
        while pending and counted >= pending[0]:
            pending.pop(0)
            segments.append([])
    return segments


class _Writer:
    """Emits frames while keeping the client's view of the tree and cursor."""

    def __init__(self, script: Scripted, ctx: TurnContext) -> None:
        self.script, self.ctx = script, ctx
        self.fragments: list[dict] = []
        self.next_id = 2
        self.opened: list[int] = []  # TOOL_OPEN fragment id of each search hit
        self.cursor: tuple[str, str | None] = ("", None)
        self.events: list[bytes] = []
        self.usage_so_far = 0  # carried into the next round's envelope
        # The flat form's fields, by step kind, and the kind written last.
        self.flat = {THINK: "", RESPONSE: ""}
        self.flat_kind: str | None = None

    # -- rounds ---------------------------------------------------------------

    def round(self, steps: list[Step], index: int, *, last: bool) -> list[bytes]:
        self.events, self.cursor = [], ("", None)
        steps = list(steps)
        if index:
            self._absorb(steps, self.script.snapshot_overshoot)
        elif steps and steps[0].kind in (THINK, RESPONSE) and not self.script.flat:
            first = steps.pop(0)  # the envelope carries the first chunk
            self._new_fragment(first.kind, first.text)
        self._open(first_round=index == 0)
        for step in steps:
            self._step(step)
        status = "INCOMPLETE" if not last else (
            "CONTENT_FILTER" if self.script.content_filter else "FINISHED")
        self._end(status, first_round=index == 0)
        return self.events

    def hint_round(self) -> list[bytes]:
        self._open(first_round=True, envelope=False)
        self.events.append(sse({"type": "error", "content": HINT_TEXT, "clear_response": True,
                                "finish_reason": self.script.hint}, "hint"))
        self._event("close", {"click_behavior": "none", "auto_resume": False})
        return self.events

    def _open(self, *, first_round: bool, envelope: bool = True) -> None:
        ids = {"request_message_id": self.ctx.request_message_id,
               "response_message_id": self.ctx.response_message_id}
        self._event("ready", {**ids, "model_type": self.ctx.model_type})
        if not first_round:
            self.events.append(COMMENT)
        self._event("update_session", {"updated_at": time.time()})
        if envelope:
            self._frame("", None, {"response": self._response()})

    def _response(self) -> dict:
        if self.script.flat:
            text = {"thinking_content": self.flat[THINK] or None, "content": self.flat[RESPONSE],
                    "thinking_elapsed_secs": None}
        else:
            text = {"fragments": copy.deepcopy(self.fragments)}
        return {
            "message_id": self.ctx.response_message_id,
            "parent_id": self.ctx.request_message_id, "model": "", "role": "ASSISTANT",
            "thinking_enabled": self.ctx.thinking_enabled, "ban_edit": False,
            "ban_regenerate": False, "status": "WIP", "incomplete_message": None,
            "accumulated_token_usage": self.usage_so_far,
            "files": [], "feedback": None, "inserted_at": time.time(),
            "search_enabled": self.ctx.search_enabled,
            **text, "conversation_mode": "DEFAULT",
            "has_pending_fragment": False, "auto_continue": False,
        }

    # -- steps ----------------------------------------------------------------

    def _step(self, step: Step) -> None:
        if step.kind == SEARCH:
            self._search()
        elif step.kind == CITE:
            self._cite(step.text)
        else:
            self._text(step.kind, step.text)

    def _text(self, kind: str, text: str) -> None:
        if self.script.flat:
            if kind != self.flat_kind:
                self._close_think()
            self.flat[kind] += text
            self.flat_kind = kind
            self._frame(f"response/{FLAT_FIELDS[kind]}", "APPEND", text)
            return
        last = self.fragments[-1] if self.fragments else None
        if last is not None and last["type"] == kind:
            last["content"] += text
            self._frame(CONTENT, "APPEND", text)
            return
        self._close_think()
        self._frame("response/fragments", "APPEND", [self._new_fragment(kind, text)])

    def _cite(self, marker: str) -> None:
        """A ``[reference:N]`` marker and, in step, the references it needs (§10.5)."""
        if not self.fragments or self.fragments[-1]["type"] != RESPONSE:
            self._text(RESPONSE, "")
        answer = self.fragments[-1]
        refs = answer["references"]
        wanted = min(int(MARKER.fullmatch(marker).group(1)) + 1, len(self.opened))
        new = [{"id": fid, "type": "TOOL_OPEN"} for fid in self.opened[len(refs):wanted]]
        items: list[dict] = [{"p": "content", "o": "APPEND", "v": marker}]
        if new:
            items.append({"p": "references", "v": new} if refs
                         else {"p": "references", "o": "SET", "v": new})
        answer["content"] += marker
        refs.extend(new)
        self._frame("response/fragments/-1", "BATCH", items)

    def _search(self) -> None:
        """One TOOL_SEARCH with every hit, then a TOOL_OPEN per hit, as in the recording."""
        self._close_think()
        query = self.script.search_query or last_user_text(self.ctx.prompt)[:80]
        search = self._new_fragment("TOOL_SEARCH", None, status="WIP",
                                    queries=[{"query": query}], results=[])
        self._frame("response/has_pending_fragment", "SET", True)
        self._frame("response", "BATCH", [{"p": "fragments", "o": "APPEND", "v": [search]},
                                          {"p": "has_pending_fragment", "o": "SET", "v": False}])
        results = [_result(hit) for hit in self.script.search]
        self.fragments[-1].update(results=results, status="FINISHED")
        self._frame("response/fragments/-1/results", "SET", results)
        self._frame("response/fragments/-1/status", "SET", "FINISHED")
        opens = [self._new_fragment("TOOL_OPEN", None, status="FINISHED", result=r,
                                    reference={"id": search["id"], "type": "TOOL_SEARCH"})
                 for r in results]
        self.opened = [f["id"] for f in opens]
        self._frame("response", "BATCH", [{"p": "fragments", "o": "APPEND",
                                           "v": [{**f, "status": "WIP"} for f in opens]}])
        for back in range(len(opens), 0, -1):
            self._frame(f"response/fragments/-{back}/status", "SET", "FINISHED")

    def _end(self, status: str, *, first_round: bool) -> None:
        if status != "INCOMPLETE":
            self._close_think()
            if self.script.tip and not self.script.flat:
                tip = self._new_fragment("TIP", TIP_TEXT, style="WARNING", hide_on_wip=True)
                self._frame("response/fragments", "APPEND", [tip])
        self.usage_so_far = self._usage()
        quasi = "INCOMPLETE" if status == "INCOMPLETE" else "FINISHED"
        self._frame("response", "BATCH", [{"p": "accumulated_token_usage", "v": self.usage_so_far},
                                          {"p": "quasi_status", "v": quasi}])
        if status == "CONTENT_FILTER":
            self._filter()
        else:
            self._frame("response/status", "SET", status)
        if self.script.finish_event:
            self._event("finish", {})
        self._event("update_session", {"updated_at": time.time()})
        if first_round and self.ctx.first_turn and self.script.title:
            self._event("title", {"content": self.script.title})
        self._event("close", {"click_behavior": "none", "auto_resume": False})

    def _filter(self) -> None:
        """The recorded content-filter tail: the template replaces every fragment."""
        self.events.append(COMMENT)
        template = {"id": self.next_id, "type": "TEMPLATE_RESPONSE",
                    "content": self.script.template}
        replaced = [] if self.script.flat else [{"p": "fragments", "v": [template]}]
        self.fragments = [] if self.script.flat else [template]
        self._frame("response", "BATCH", [
            {"p": "ban_regenerate", "v": True}, {"p": "status", "v": "CONTENT_FILTER"},
            *replaced, {"p": "quasi_status", "v": "CONTENT_FILTER"}])

    # -- model ----------------------------------------------------------------

    def _new_fragment(self, kind: str, content: str | None, **fields: Any) -> dict:
        frag: dict[str, Any] = {"id": self.next_id, "type": kind, "content": content}
        if kind in (THINK, RESPONSE):
            frag.update(references=[], stage_id=1)
            if kind == THINK:
                frag["elapsed_secs"] = None
        frag.update(fields)
        self.next_id += 1
        self.fragments.append(frag)
        return copy.deepcopy(frag)

    def _close_think(self) -> None:
        if self.script.flat:
            if self.flat_kind == THINK:
                self.flat_kind = None
                elapsed = round(0.05 * len(self.flat[THINK]), 3)
                self._frame("response/thinking_elapsed_secs", "SET", elapsed)
            return
        last = self.fragments[-1] if self.fragments else None
        if last is not None and last["type"] == THINK and last["elapsed_secs"] is None:
            last["elapsed_secs"] = round(0.05 * len(last["content"]), 3)
            self._frame("response/fragments/-1/elapsed_secs", "SET", last["elapsed_secs"])

    def _absorb(self, steps: list[Step], count: int) -> None:
        """Move the next ``count`` characters of the open fragment into the snapshot."""
        if self.script.flat:
            last = {"type": self.flat_kind, "content": ""} if self.flat_kind else None
        else:
            last = self.fragments[-1] if self.fragments else None
        while count > 0 and steps and last is not None and steps[0].kind == last["type"]:
            text = steps[0].text
            last["content"] += text[:count]
            if self.script.flat:
                self.flat[last["type"]] += text[:count]
            if text[count:]:
                steps[0] = Step(steps[0].kind, text[count:])
            else:
                steps.pop(0)
            count -= len(text)

    def _usage(self) -> int:
        if self.script.usage is not None:
            return self.script.usage
        answered = len(self.flat[RESPONSE]) + sum(
            len(f["content"]) for f in self.fragments if f["type"] == RESPONSE)
        return len(self.ctx.prompt) // 4 + answered // 2 + 1

    # -- wire -----------------------------------------------------------------

    def _frame(self, path: str, op: str | None, value: Any) -> None:
        """A patch with ``p`` / ``o`` left out wherever the cursor already has them."""
        doc: dict[str, Any] = {}
        if path != self.cursor[0]:
            doc["p"] = path
        if op != self.cursor[1]:
            doc["o"] = op
        doc["v"] = value
        self.cursor = (path, op)
        self.events.append(sse(doc))

    def _event(self, name: str, data: Any) -> None:
        self.events.append(sse(data, name))


def _result(hit: Any) -> dict:
    return {"url": hit.url, "title": hit.title, "snippet": hit.snippet, "cite_index": None,
            "published_at": None, "site_icon": "", "site_name": urlsplit(hit.url).hostname or "",
            "query_indexes": [0]}
