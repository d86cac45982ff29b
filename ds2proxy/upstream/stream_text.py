"""Visible text of the response tree (spec §10.7, §11.4).

:func:`text_fields` lists the tree's text-bearing fields (THINK / RESPONSE
fragments, legacy flat fields) with a stable key each; :class:`TextTracker`
remembers, per key and across rounds, the text already emitted, so a
continue round's snapshot yields only what is new.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator
from typing import Any, NamedTuple

from .events import TextKind
from .patch_ops import LEGACY_ANSWER, LEGACY_THINKING, TAIL_CONTENT

log = logging.getLogger("ds2proxy.upstream.stream")

FRAGMENT_KINDS: dict[str, TextKind] = {"THINK": "thinking", "RESPONSE": "answer"}
# Fragment types that are known and never text (§10.2).
SILENT_FRAGMENTS = frozenset({"TIP", "TOOL_SEARCH", "TOOL_OPEN", "TEMPLATE_RESPONSE"})

LEAK_MARKER = "CONTENT_FILTER"
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
# The tracker key of flat reasoning's raw text, which tags make differ
# from the reasoning and answer it shows (see Tail.flat).
RAW_THINKING = (LEGACY_THINKING, "raw")
SPILL = (LEGACY_THINKING, "spill")


def fragments_of(root: Any) -> list:
    """The ``response.fragments`` list of a tree, or an empty list."""
    response = root.get("response") if isinstance(root, dict) else None
    frags = response.get("fragments") if isinstance(response, dict) else None
    return frags if isinstance(frags, list) else []


def text_fields(root: Any, unknown: set[str], *,
                ended: bool = False) -> Iterator[tuple[Hashable, TextKind, str]]:
    """Yield ``(key, kind, text)`` for every text field, in creation order.

    Unknown fragment types are added to ``unknown`` (so the caller logs each
    once) and skipped. ``ended``: the answer is over, so flat reasoning ending
    in what may be the start of a think tag is shown as it is.
    """
    for pos, frag in enumerate(fragments_of(root)):
        if not isinstance(frag, dict):
            continue
        ftype = frag.get("type")
        kind = FRAGMENT_KINDS.get(ftype) if isinstance(ftype, str) else None
        if kind is None:
            if not (isinstance(ftype, str) and ftype in SILENT_FRAGMENTS):
                unknown.add(str(ftype))  # a non-string type is unknown too, not a crash
            continue
        content = frag.get("content")
        if isinstance(content, str):
            yield fragment_key(frag, pos), kind, content
    response = root.get("response") if isinstance(root, dict) else None
    if isinstance(response, dict):
        yield from _legacy_fields(response, ended)


def fragment_key(frag: dict, pos: int) -> Hashable:
    """A fragment's tracker key: its id, else its position (ids survive a snapshot)."""
    fid = frag.get("id")
    return "fragment", fid if isinstance(fid, int) else f"#{pos}"


class Tail(NamedTuple):
    """The text field path-less tokens go to (the parser's fast path): the
    newest THINK / RESPONSE fragment's ``content``, or a legacy flat field."""

    node: dict            # the fragment, or the response object of a flat field
    field: str            # the text's key in ``node``
    key: Hashable         # its tracker key
    kind: TextKind
    path: str             # the cursor path that appends to it
    guard: tuple[str, ...]  # a token holding one of these goes the general way
    # Flat reasoning: ``key`` tracks the raw field, and what a token adds to
    # the reasoning and the answer it shows comes from think_tags.step.
    flat: bool = False


def tail_text(root: Any, path: str = TAIL_CONTENT) -> Tail | None:
    """The :class:`Tail` a token under cursor ``path`` appends to: the
    legacy flat field that path names, else the last fragment when it is
    THINK / RESPONSE text."""
    if path == LEGACY_ANSWER or path == LEGACY_THINKING:
        return _legacy_tail(root, path)
    frags = fragments_of(root)
    frag = frags[-1] if frags else None
    if not isinstance(frag, dict) or not isinstance(frag.get("content"), str):
        return None
    ftype = frag.get("type")
    kind = FRAGMENT_KINDS.get(ftype) if isinstance(ftype, str) else None
    if kind is None:
        return None
    guard = (LEAK_MARKER,) if kind == "answer" else ()
    return Tail(frag, "content", fragment_key(frag, len(frags) - 1), kind, TAIL_CONTENT, guard)


def _legacy_tail(root: Any, path: str) -> Tail | None:
    """A flat field's tail. Reasoning is split at think tags by
    :func:`split_think_tags`: its tokens go through
    :func:`~ds2proxy.upstream.think_tags.step`, which finds what each adds
    to the reasoning and to the answer after ``</think>`` (the tail's kind
    is then the reasoning's only until the tokens say)."""
    response = root.get("response") if isinstance(root, dict) else None
    if not isinstance(response, dict):
        return None
    field = path[len("response/"):]
    text = response.get(field)
    if not isinstance(text, str):
        return None
    if path == LEGACY_ANSWER:
        # The answer's first text ends the reasoning (see _legacy_fields): it
        # goes the general way, which shows what the reasoning held back.
        return Tail(response, field, LEGACY_ANSWER, "answer", path,
                    (LEAK_MARKER,)) if text else None
    return Tail(response, field, RAW_THINKING, "thinking", path, (), flat=True)


def _legacy_fields(response: dict, ended: bool) -> Iterator[tuple[Hashable, TextKind, str]]:
    """Flat ``thinking_content`` / ``content`` of the older stream form (§10.8).

    Once the answer field has text, the reasoning before it is complete:
    no later token can finish a tag it ends with, so nothing is held back.
    """
    thinking = response.get("thinking_content")
    answer = response.get("content")
    if isinstance(thinking, str):
        done = ended or (isinstance(answer, str) and answer != "")
        reasoning, spill = split_think_tags(thinking, ended=done)
        yield LEGACY_THINKING, "thinking", reasoning
        yield SPILL, "answer", spill
    if isinstance(answer, str):
        yield LEGACY_ANSWER, "answer", answer


def split_think_tags(text: str, *, ended: bool = True) -> tuple[str, str]:
    """Old model bug: reasoning after ``</think>`` is answer; the tags are dropped.

    Until the text has ``ended``, a tail that may be a tag cut between
    tokens (``<thi``) is held back: shown now, it could never be taken back
    once the rest of the tag arrives.
    """
    if not ended:
        text = text[:len(text) - _partial_tag(text)]
    if _THINK_CLOSE not in text:
        return text.replace(_THINK_OPEN, ""), ""
    head, tail = text.split(_THINK_CLOSE, 1)
    return (head.replace(_THINK_OPEN, ""),
            tail.replace(_THINK_OPEN, "").replace(_THINK_CLOSE, ""))


def _partial_tag(text: str) -> int:
    """Length of the end of ``text`` that a think tag could start with (0: none)."""
    at = text.rfind("<", max(0, len(text) - len(_THINK_CLOSE) + 1))
    if at < 0:
        return 0
    rest = text[at:]
    return len(rest) if _THINK_OPEN.startswith(rest) or _THINK_CLOSE.startswith(rest) else 0


def cut_leak(text: str) -> tuple[str, bool]:
    """Cut answer text at a leaked ``CONTENT_FILTER`` marker (§10.6).

    Kept: the part before it, trailing spaces and tabs removed. Matched
    case-sensitively, so an answer that merely talks about a lower-case
    ``content_filter`` finish reason is left alone.
    """
    at = text.find(LEAK_MARKER)
    if at < 0:
        return text, False
    return text[:at].rstrip(" \t"), True


class TextTracker:
    """Emitted text per field key, kept across rounds (§10.7 rule 2, §11.4)."""

    def __init__(self) -> None:
        self._seen: dict[Hashable, str] = {}

    def delta(self, key: Hashable, text: str) -> str:
        """The part of ``text`` not emitted yet for ``key`` ("" if none)."""
        seen = self._seen.get(key, "")
        if text is seen:
            return ""
        if text.startswith(seen):
            self._seen[key] = text
            return text[len(seen):]
        if not seen.startswith(text):
            log.warning("text of %s changed behind the stream (%d chars emitted, %d now);"
                        " keeping what was sent", key, len(seen), len(text))
            self._seen[key] = text
        return ""

    def holds(self, key: Hashable, text: str) -> bool:
        """``text`` is exactly what was emitted for ``key`` (the same object), so
        appending to it makes the appended part the whole delta."""
        return self._seen.get(key) is text

    def advance(self, key: Hashable, text: str) -> None:
        """Record ``text`` as emitted for ``key`` (when :meth:`holds` was true)."""
        self._seen[key] = text

    def equals(self, key: Hashable, text: str) -> bool:
        """What was emitted for ``key`` is ``text`` (equal, not just the same object)."""
        return self._seen.get(key, "") == text

    def extend(self, key: Hashable, more: str) -> None:
        """Record ``more`` as emitted after what ``key`` had."""
        self._seen[key] = self._seen.get(key, "") + more


def citations_of(tree: Any) -> list[tuple[int, str, str]]:
    """``(N, url, title)`` for each ``[reference:N]`` target of the answer (§10.5)."""
    frags = [f for f in fragments_of(tree) if isinstance(f, dict)]
    by_id = {f.get("id"): f for f in frags}
    found: list[tuple[int, str, str]] = []
    for frag in frags:
        refs = frag.get("references") if frag.get("type") == "RESPONSE" else None
        for n, ref in enumerate(refs if isinstance(refs, list) else []):
            target = by_id.get(ref.get("id")) if isinstance(ref, dict) else None
            link = _link(target)
            if link is not None:
                found.append((n, *link))
    return found


def _link(fragment: Any) -> tuple[str, str] | None:
    """A TOOL_OPEN's page, or a TOOL_SEARCH's first result."""
    if not isinstance(fragment, dict):
        return None
    if fragment.get("type") == "TOOL_OPEN":
        page = fragment.get("result")
    elif fragment.get("type") == "TOOL_SEARCH":
        results = fragment.get("results")
        page = results[0] if isinstance(results, list) and results else None
    else:
        return None
    if not isinstance(page, dict) or not isinstance(page.get("url"), str):
        return None
    return page["url"], str(page.get("title") or "")
