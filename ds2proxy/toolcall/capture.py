"""Deciding what a candidate block is: a call block, a mention, or undecided.

The capture starts at a tool tag. An opening wrapper counts only when the
first thing after it is an ``invoke`` tag — otherwise it is a mention in
prose and is shown at once instead of holding back the rest of the answer.
A bare ``invoke`` counts when only blanks and further invokes lie between
it and a closing wrapper (the model forgot the opener); the stream cannot
wait for "the last" closing wrapper, so the first one ends the block. Every
verdict depends only on text already seen, so the answer is the same
however the stream was cut into chunks.

Each committed wrapper stands on its own: a broken one is suppressed (never
shown as raw syntax) whatever the wrappers after it hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ds2proxy.toolcall.cdata import CDATA_OPEN
from ds2proxy.toolcall.invoke import InvokeSpan
from ds2proxy.toolcall.tags import INVOKE, PARAMETER, WRAPPER, Head, Tag, scan_head
from ds2proxy.toolcall.tokens import COMMENT_CLOSE, COMMENT_OPEN, Tokenizer, Tokens

_BLANK = " \t\r\n"
# A comment between tags counts only when it ends within this many characters.
_MAX_COMMENT = 2048


class Verdict(Enum):
    WAIT = "wait"  # undecided: keep collecting
    RELEASE = "release"  # text[:end] is ordinary text; look again after it
    BLOCK = "block"  # text[:end] is a complete call block
    OPEN = "open"  # a call block whose wrapper has not closed yet


@dataclass(slots=True)
class CaptureScan:
    verdict: Verdict
    tokens: Tokens
    end: int = 0
    invokes: list[InvokeSpan] = field(default_factory=list)  # finished ones (shared: read only)
    unfinished: InvokeSpan | None = None  # the invoke after them, still being written
    # False for a block rebuilt around a bare invoke: its calls wait for its end.
    early: bool = True
    # Only a further tag can change this scan (text that adds none cannot).
    settled: bool = False

    def span(self, index: int) -> InvokeSpan | None:
        """Invoke ``index`` of the block: a finished one, the unfinished one, or None."""
        if index < len(self.invokes):
            return self.invokes[index]
        return self.unfinished if index == len(self.invokes) else None


def scan_capture(text: str, *, final: bool, tokenizer: Tokenizer | None = None,
                 walk: WrapperWalk | None = None, after_block: bool = False) -> CaptureScan:
    """Classify a capture that starts with a tool tag; ``tokenizer`` and
    ``walk`` carry the work done on an earlier, shorter version of the same
    text; ``after_block`` when only blanks lie between a block and it."""
    head = scan_head(text, 0, final=final)
    tokens = (tokenizer or Tokenizer()).advance(text, final=final)
    if not isinstance(head, Head):
        # Not a tag after all: show its first character and look again.
        return CaptureScan(Verdict.RELEASE, tokens, end=1)
    repeated_close = after_block and head.closing and head.name == WRAPPER
    if (head.closing or head.name == PARAMETER) and not repeated_close:
        return CaptureScan(Verdict.RELEASE, tokens, end=head.end)
    first = tokens.tag_at(0)
    if first is None:
        waiting = tokens.stop == 0 and not final
        return CaptureScan(Verdict.WAIT if waiting else Verdict.RELEASE, tokens, end=head.end)
    if repeated_close:
        # The block's closer written twice: part of the block, never text.
        return CaptureScan(Verdict.BLOCK, tokens, end=first.end)
    if first.name == WRAPPER and not first.self_closing:
        return _wrapper(text, tokens, first, walk)
    if first.name == INVOKE and first.attrs.get("name", "").strip():
        return _bare_invoke(text, tokens, walk)
    return CaptureScan(Verdict.RELEASE, tokens, end=first.end)


def _next_tag(text: str, tokens: Tokens, pos: int) -> Tag | bool | None:
    """The tag that is the first thing after ``pos`` other than blanks and
    XML comments (ignored regions, §3.1): the Tag, False when it is
    something else, None when not known yet."""
    while True:
        pos = _skip_blank(text, pos, tokens.stop)
        if not text.startswith(COMMENT_OPEN, pos):
            break
        close = text.find(COMMENT_CLOSE, pos + len(COMMENT_OPEN), pos + _MAX_COMMENT)
        if close < 0:
            # Still open: wait for its end, unless it is too long to be a
            # remark inside a block (then the wrapper before it is prose).
            waiting = tokens.stop < len(text) and len(text) < pos + _MAX_COMMENT
            return None if waiting else False
        pos = close + len(COMMENT_CLOSE)
    if pos >= tokens.stop:
        # A CDATA section whose end is still unknown is already no tag.
        return False if text.startswith(CDATA_OPEN, pos) else None
    return tokens.tag_at(pos) or False


@dataclass(slots=True)
class WrapperWalk:
    """The tags after a committed wrapper read so far, resumed as more arrive:
    a long block is read once, not again for every chunk of the stream."""

    next: int = 1  # index in the tags of the next one to read (0 is the wrapper)
    depth: int = 1
    invokes: list[InvokeSpan] = field(default_factory=list)
    opener: Tag | None = None  # the invoke being read, if any
    inside: list[Tag] = field(default_factory=list)
    invoke_depth: int = 0
    end: Tag | None = None  # the wrapper's closing tag, once found
    # Invokes without a wrapper: those known to be followed by another
    # invoke, the one being read (its index), where its end search stands.
    chain: list[InvokeSpan] = field(default_factory=list)
    chain_at: int = 0
    seek: int = -1  # the next tag the end search reads
    seek_depth: int = 0

    def advance(self, tags: list[Tag]) -> None:
        while self.end is None and self.next < len(tags):
            tag = tags[self.next]
            self.next += 1
            if self.opener is not None:
                self.invoke_depth += _invoke_step(tag)
                if self.invoke_depth == 0:
                    self.invokes.append(InvokeSpan(self.opener, tag, tuple(self.inside)))
                    self.opener, self.inside = None, []
                else:
                    self.inside.append(tag)
            elif tag.name == WRAPPER and not tag.self_closing:
                self.depth += -1 if tag.closing else 1
                if self.depth == 0:
                    self.end = tag
            elif tag.opens(INVOKE):
                if tag.self_closing:
                    self.invokes.append(InvokeSpan(tag, tag))
                else:
                    self.opener, self.invoke_depth = tag, 1

    def open_span(self) -> InvokeSpan | None:
        """The invoke still being written (its body unread), if any."""
        return None if self.opener is None else InvokeSpan(self.opener, None)


def _wrapper(text: str, tokens: Tokens, wrapper: Tag, walk: WrapperWalk | None) -> CaptureScan:
    """A wrapper commits when an invoke comes first after it; the model's
    repeated opener (``<tool_calls><tool_calls>``) counts as one."""
    nxt = _next_tag(text, tokens, wrapper.end)
    while nxt and nxt.opens(WRAPPER) and not nxt.self_closing:
        nxt = _next_tag(text, tokens, nxt.end)
    if nxt is None:
        return CaptureScan(Verdict.WAIT, tokens)
    if nxt is False or not nxt.opens(INVOKE):
        return CaptureScan(Verdict.RELEASE, tokens, end=wrapper.end)
    walk = walk if walk is not None else WrapperWalk()
    if walk.next == 1:
        walk.next = tokens.index_of(nxt)
    walk.advance(tokens.tags)
    if walk.end is not None:
        return CaptureScan(Verdict.BLOCK, tokens, end=walk.end.end, invokes=walk.invokes)
    return CaptureScan(Verdict.OPEN, tokens, invokes=walk.invokes, unfinished=walk.open_span(),
                       settled=True)


def _invoke_step(tag: Tag) -> int:
    """Change of invoke nesting depth caused by ``tag``."""
    if tag.name != INVOKE or tag.self_closing:
        return 0
    return -1 if tag.closing else 1


def _bare_invoke(text: str, tokens: Tokens, walk: WrapperWalk | None) -> CaptureScan:
    """Invokes with no opening wrapper: wait while they may still be followed
    by a closing wrapper; show the first tag as text once they cannot."""
    walk = walk if walk is not None else WrapperWalk()
    first = tokens.tags[0]
    while True:
        index = walk.chain_at
        close_index = _invoke_end(text, tokens, index, walk)
        if close_index is None or close_index is False:
            verdict = Verdict.WAIT if close_index is None else Verdict.RELEASE
            # A body whose end is being looked for waits for a closing tag.
            return CaptureScan(verdict, tokens, end=first.end, settled=close_index is None and walk.seek >= 0)
        close = tokens.tags[close_index]
        span = InvokeSpan(tokens.tags[index], close, tuple(tokens.tags[index + 1:close_index]))
        nxt = _next_tag(text, tokens, close.end)
        if nxt is None:
            return CaptureScan(Verdict.WAIT, tokens)
        if nxt is not False and nxt.closes(WRAPPER):
            return CaptureScan(Verdict.BLOCK, tokens, end=nxt.end,
                               invokes=[*walk.chain, span], early=False)
        if nxt is False or not nxt.opens(INVOKE) or not nxt.attrs.get("name", "").strip():
            return CaptureScan(Verdict.RELEASE, tokens, end=first.end)
        walk.chain.append(span)
        walk.chain_at, walk.seek = tokens.index_of(nxt), -1


def _invoke_end(text: str, tokens: Tokens, index: int, walk: WrapperWalk) -> int | bool | None:
    """Index of the tag closing the invoke at ``index``; False when its body
    cannot be a call body; None when not known yet. The search resumes where
    ``walk`` left it."""
    opener = tokens.tags[index]
    if opener.self_closing:
        return index
    nxt = _next_tag(text, tokens, opener.end)
    if nxt is None:
        return None
    plausible = (nxt is not False and (nxt.opens(PARAMETER) or nxt.closes(INVOKE))) or (
        nxt is False and text[_skip_blank(text, opener.end, tokens.stop)] in "{[")
    if not plausible:
        return False
    if walk.seek < 0:
        walk.seek, walk.seek_depth = index, 0
    while walk.seek_depth or walk.seek == index:
        if walk.seek >= len(tokens.tags):
            return None
        walk.seek_depth += _invoke_step(tokens.tags[walk.seek])
        walk.seek += 1
    return walk.seek - 1


def _skip_blank(text: str, pos: int, limit: int) -> int:
    while pos < limit and text[pos] in _BLANK:
        pos += 1
    return pos
