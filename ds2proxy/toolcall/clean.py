"""Removing what must never reach the client from the visible text (§4.9).

DeepSeek leaks its chat-template tokens, ``<think>`` tags and, after tool
rounds, fragments of earlier tool traffic; agent clients' own XML wrappers
(``attempt_completion`` …) show up around answers. The cleaner works on a
stream: it holds back only a tail that may still become something it
removes, so text without ``<``, backticks or ``[`` passes through at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from ds2proxy.toolcall.fences import CodeSpans
from ds2proxy.toolcall.jsonfix import BracketWalk
from ds2proxy.toolcall.tags import ascii_lower

_MORE = "more"  # a rule needs more text to decide
Outcome = tuple[int, str] | str | None  # (end, replacement), _MORE, or no match

_CANDIDATE = re.compile(r"[<`\[]")
# Where a cleaning rule can start (a citation marker too starts with "[").
RULE_START = _CANDIDATE
_BARS = "|｜"
_TOKEN_WORDS = frozenset({
    "begin_of_sentence", "assistant", "tool", "end_of_sentence", "end_of_thinking",
    "end_of_toolresults", "end_of_instructions",
})
_AGENT_TAGS = ("attempt_completion", "ask_followup_question", "new_task")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_EMPTY_JSON_FENCE = ("```json", "```")
_WIRE_PREFIX = '[{"function":'


class _Memo:
    """How far the scans of a held tail got (keys: offsets in the held
    text), so a rule waiting for more text resumes where it stopped instead
    of reading the whole tail again with every chunk."""

    def __init__(self) -> None:
        self.brackets: dict[int, BracketWalk] = {}
        self.searched: dict[int, int] = {}
        # At the end of the text: where a bracket opened that never closes.
        # One opened after it is taken as unclosed too (its text stays), so
        # the end of a text of many openers is read once, not once each.
        self.unclosed: int | None = None

    def shift(self, by: int) -> None:
        """The held text now starts ``by`` characters later."""
        if by:
            self.brackets = {k - by: walk.shifted(by) for k, walk in self.brackets.items()
                             if k >= by}
            self.searched = {k - by: v - by for k, v in self.searched.items() if k >= by}

    def clear(self) -> None:
        self.brackets.clear()
        self.searched.clear()
        self.unclosed = None


class TextCleaner:
    """§4.9 cleaning of a stream; ``flush`` releases a held tail at the end.

    Code (a fenced block, an inline span) is the answer's content, not a
    leak: there only template tokens go. A ``<think>`` in a code example
    used to be taken for leaked reasoning and cut the rest of the answer.
    """

    def __init__(self) -> None:
        self.pending = ""  # text held while a rule may still match
        self._in_agent_wrapper = False
        self._memo = _Memo()
        self._code = CodeSpans()  # after the text read so far (held text excluded)

    def feed(self, text: str) -> str:
        if not self.pending and _CANDIDATE.search(text) is None:
            self._code.feed(text)
            return text  # nothing held and no rule can start here
        self.pending += text
        return self._drain(final=False)

    def flush(self) -> str:
        return self._drain(final=True)

    def note(self, text: str) -> None:
        """Text shown without cleaning (nothing held, no character a rule
        starts at): only whether later text is code follows from it."""
        self._code.feed(text)

    def _drain(self, *, final: bool) -> str:
        text = self.pending
        out: list[str] = []
        last = pos = fed = 0
        while (match := _CANDIDATE.search(text, pos)) is not None:
            at = match.start()
            self._code.feed(text, fed, at)
            fed = at
            outcome = self._rule_at(text, at, final)
            if outcome is None:
                pos = at + 1
                continue
            out.append(text[last:at])
            if outcome == _MORE:
                self.pending = text[at:]
                self._memo.shift(at)
                return "".join(out)
            end, replacement = outcome
            out.append(replacement)
            self._code.feed(text, at, end)
            last = pos = fed = end
        self._code.feed(text, fed)
        out.append(text[last:])
        self.pending = ""
        self._memo.clear()
        return "".join(out)

    def _rule_at(self, text: str, at: int, final: bool) -> Outcome:
        rules: tuple[Callable[[str, int, bool, _Memo], Outcome], ...]
        if text[at] == "`":
            rules = (_empty_json_fence,)
        elif self._code.inside():
            rules = (_template_token,) if text[at] == "<" else ()
        elif text[at] == "[":
            rules = (_wire_array,)
        else:
            rules = (_template_token, _think_tag, self._agent_tag)
        for rule in rules:
            outcome = rule(text, at, final, self._memo)
            if outcome is not None:
                return outcome
        return None

    def _agent_tag(self, text: str, at: int, final: bool, _memo: _Memo) -> Outcome:
        """Agent wrappers lose their tags (and their ``<result>`` tags) but
        keep the text inside."""
        names = [*_AGENT_TAGS, "result"] if self._in_agent_wrapper else list(_AGENT_TAGS)
        waiting = False
        for name in names:
            for literal in (f"<{name}>", f"</{name}>"):
                end = _literal(text, at, literal, final)
                if end == _MORE:
                    waiting = True
                elif end is not None:
                    if name != "result":
                        self._in_agent_wrapper = not literal.startswith("</")
                    return end, ""
        return _MORE if waiting else None


def _literal(text: str, at: int, literal: str, final: bool) -> int | str | None:
    """End of ``literal`` (ASCII case-insensitive) at ``at``; _MORE when the
    text ends on a prefix of it."""
    piece = ascii_lower(text[at:at + len(literal)])
    if piece == literal:
        return at + len(literal)
    if not final and len(piece) < len(literal) and literal.startswith(piece):
        return _MORE
    return None


def _template_token(text: str, at: int, final: bool, memo: _Memo) -> Outcome:
    """``<｜end▁of▁sentence｜>`` and its look-alikes; a ``<|Tool|>`` followed by
    a leaked tool-result object goes with the object."""
    end = _token_end(text, at, final)
    if end is None or end == _MORE:
        return end
    word, stop = end
    if word == "tool":
        blob = _tool_blob_end(text, stop, final, memo)
        if blob == _MORE:
            return _MORE
        if blob is not None:
            return blob, ""
    return stop, ""


def _token_end(text: str, at: int, final: bool) -> tuple[str, int] | str | None:
    """(word, end) of a template token at ``at``."""
    n = len(text)
    i = at + 1
    if i >= n:
        return None if final else _MORE
    if text[i] not in _BARS:
        return None
    i = _skip(text, i + 1, " ")
    j = i
    while j < n and (text[j] in "▁_" or (text[j].isascii() and text[j].isalpha())):
        j += 1
    word = ascii_lower(text[i:j]).replace("▁", "_")
    k = _skip(text, j, " ")
    if k >= n:
        cut = j == n and any(w.startswith(word) for w in _TOKEN_WORDS)
        return _MORE if not final and (cut or word in _TOKEN_WORDS) else None
    if word not in _TOKEN_WORDS or text[k] not in _BARS:
        return None
    if k + 1 >= n:
        return None if final else _MORE
    return (word, k + 2) if text[k + 1] == ">" else None


def _skip(text: str, i: int, chars: str) -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _tool_blob_end(text: str, pos: int, final: bool, memo: _Memo) -> int | str | None:
    """End of a leaked ``{… "tool_call_id": "call…"}`` object after ``<|Tool|>``."""
    start = _skip(text, pos, " \t\r\n")
    if start >= len(text):
        return None if final else _MORE
    if text[start] != "{":
        return None
    found = _json_at(text, start, final, memo)
    if not isinstance(found, tuple):
        return found
    end, blob = found
    call_id = blob.get("tool_call_id") if isinstance(blob, dict) else None
    return end if isinstance(call_id, str) and call_id.startswith("call") else None


def _json_at(text: str, start: int, final: bool, memo: _Memo
             ) -> tuple[int, object] | str | None:
    """(end, value) of the JSON object or array at ``start``; _MORE while it
    is unfinished; None when it is not JSON."""
    if final and memo.unclosed is not None and start > memo.unclosed:
        return None
    walk = memo.brackets.setdefault(start, BracketWalk(start))
    end = walk.end(text)
    if end is None:
        if final:
            memo.unclosed = start
        return None if final else _MORE
    try:
        return end, json.loads(text[start:end])
    except ValueError:
        return None


def _think_tag(text: str, at: int, final: bool, memo: _Memo) -> Outcome:
    """``<think>``/``</think>`` go; an unclosed ``<think>`` cuts the rest."""
    end = _literal(text, at, _THINK_CLOSE, final)
    if isinstance(end, int):
        return end, ""
    if end == _MORE:
        return _MORE
    end = _literal(text, at, _THINK_OPEN, final)
    if end is None or end == _MORE:
        return end
    # The closing tag is searched for in the text not searched yet (plus the
    # few characters a tag cut at the old end needs).
    start = max(end, memo.searched.get(at, end) - len(_THINK_CLOSE) + 1)
    memo.searched[at] = len(text)
    if _THINK_CLOSE in ascii_lower(text[start:]):
        return end, ""
    return (len(text), "") if final else _MORE


def _empty_json_fence(text: str, at: int, final: bool, _memo: _Memo) -> Outcome:
    """A ```` ```json ```` fence with nothing in it (left over from a call)."""
    opener, closer = _EMPTY_JSON_FENCE
    end = _literal(text, at, opener, final)
    if end is None or end == _MORE:
        return end
    inner = _skip(text, end, " \t\r\n")
    close = _literal(text, inner, closer, final)
    return (close, "") if isinstance(close, int) else close


def _wire_array(text: str, at: int, final: bool, memo: _Memo) -> Outcome:
    """A leaked OpenAI ``tool_calls`` array: ``[{"function":{…},"id":"call…",…}]``."""
    compact = re.sub(r"\s+", "", text[at:at + 64])
    if not compact.startswith(_WIRE_PREFIX):
        cut = at + 64 >= len(text) and _WIRE_PREFIX.startswith(compact)
        return _MORE if cut and not final else None
    found = _json_at(text, at, final, memo)
    if not isinstance(found, tuple):
        return found
    end, calls = found
    return (end, "") if _is_wire_calls(calls) else None


def _is_wire_calls(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(c, dict) and isinstance(c.get("function"), dict)
        and c.get("type") == "function" and str(c.get("id", "")).startswith("call")
        for c in value
    )
