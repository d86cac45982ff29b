"""Enum output: the answer is exactly one of a list of values (Gemini's
``responseMimeType: "text/x.enum"``).

As for JSON mode (:mod:`.structured`), the model is told in the prompt; its
reply is then read back to the one value it names, tolerating what models
wrap a word in (quotes, a code fence, a final full stop, a different case,
or a short sentence around it). A reply naming no value, or more than one,
is a :class:`~.structured.JSONOutputError`, which the pipeline repairs once
in the same session like a bad JSON answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson

# Longest reply searched for a value inside prose; beyond, only a bare value counts.
MAX_PROSE = 2000
MAX_OCCURRENCES = 20_000  # occurrences of values looked at in one reply
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_WRAPPERS = "\"'`*“”‘’ \t\r\n"


class EnumOutputError(ValueError):
    """The reply names none of the values, or several."""


def instructions(values: Sequence[str]) -> str:
    """The system text asking for one of ``values`` (listed as JSON strings,
    so a value with a comma or a quote stays unambiguous)."""
    listed = orjson.dumps(list(values)).decode()
    return ("Response format: reply with exactly one of these values and nothing else — "
            "written as listed, without the quotes, with no explanation, punctuation or "
            f"Markdown: {listed}")


def repair(problem: str, values: Sequence[str]) -> str:
    """The follow-up message after a reply that named no value, or several."""
    return (f"Your previous reply could not be used: {problem}. Reply again with only the "
            "one value that answers, exactly as listed.\n\n" + instructions(values))


def pick_value(text: str, values: Sequence[str]) -> str:
    """The one value ``text`` names, spelt as the client listed it."""
    bare = _unwrap(text)
    if bare in values:
        return bare
    folded = [v for v in values if v.casefold() == bare.casefold()]
    if len(folded) == 1:
        return folded[0]
    if len(text) <= MAX_PROSE:
        named = _named_in(text, values)
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise EnumOutputError("the reply names more than one of the allowed values")
    raise EnumOutputError("the reply is not one of the allowed values")


def _unwrap(text: str) -> str:
    """The text without a code fence, quotes, emphasis or a final full stop."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    stripped = stripped.strip(_WRAPPERS)
    return stripped[:-1].strip(_WRAPPERS) if stripped.endswith(".") else stripped


def _named_in(text: str, values: Sequence[str]) -> list[str]:
    """The values that occur in ``text`` as whole words: as spelt, else in
    any case. Longer values are looked for first and the text they cover
    is taken, so "AB" in the reply does not also count as "A". Plain
    substring search: a regular expression compiled per value took seconds
    on the event loop for a thousand long values."""
    budget = [MAX_OCCURRENCES]
    for fold in (False, True):
        hay = text.lower() if fold else text
        covered = bytearray(len(hay))
        found = [value for value in sorted((v for v in values if v.strip()), key=len,
                                           reverse=True)
                 if _occurs(hay, value.lower() if fold else value, covered, budget)]
        if found:
            return found
    return []


def _occurs(hay: str, needle: str, covered: bytearray, budget: list[int]) -> bool:
    """Whether ``needle`` stands as a whole word in ``hay`` outside the text
    ``covered``, which its occurrences then join; ``budget`` bounds the
    occurrences looked at (a reply of "aaaa…" holds one at every letter)."""
    hit = False
    start = hay.find(needle)
    while start != -1 and budget[0] > 0:
        budget[0] -= 1
        end = start + len(needle)
        if (not _word_at(hay, start - 1) and not _word_at(hay, end)
                and covered.find(1, start, end) == -1):
            covered[start:end] = b"\x01" * (end - start)
            hit = True
        start = hay.find(needle, start + 1)
    return hit


def _word_at(text: str, index: int) -> bool:
    """Is there a word character (as ``\\w`` reads one) at ``index``?"""
    return 0 <= index < len(text) and (text[index].isalnum() or text[index] == "_")

