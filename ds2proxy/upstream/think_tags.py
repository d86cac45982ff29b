"""Think tags split off flat reasoning token by token (spec §10.8).

:func:`~ds2proxy.upstream.stream_text.split_think_tags` splits the whole
field; re-running it per token costs the field's length each time. A
:class:`Tags` state remembers what that split depends on at the field's
end (whether ``</think>`` was seen, the raw end held back as a possible
tag, the shown answer's end that may still become ``</think>``), so
:func:`step` finds what one token adds to the reasoning and to the answer
from that state and the token alone. Neither tag has a ``<`` but its
first character, so no tag can straddle a point the state does not hold.
"""

from __future__ import annotations

from typing import NamedTuple

from .stream_text import _THINK_CLOSE, _THINK_OPEN, _partial_tag


class Tags(NamedTuple):
    """Where the split of a flat reasoning field stands at its end."""

    closed: bool  # the raw text shown so far holds ``</think>``: text goes to the answer
    held: str     # the raw end not shown yet: it may start a tag (only while not ended)
    close_part: str  # closed: the shown answer's end (tags ``<think>`` dropped)
    # that ``</think>`` could start with, so a token may still complete it
    ended: bool   # the field is complete: nothing is held, a "<" goes the general way

    @property
    def plain(self) -> bool:
        """A token without a "<" just extends the shown side as it is."""
        return not self.held and not self.close_part


def tags_of(raw: str, ended: bool) -> Tags | None:
    """The state of ``raw`` as split by ``split_think_tags(raw, ended=ended)``;
    None when it ends in part of a tag although ended (shown then, so a token
    could change it: such text goes the general way). Reads the whole field:
    once per full sync, never per token."""
    hold = _partial_tag(raw)
    if ended and hold:
        return None
    cut = len(raw) - hold if not ended else len(raw)
    at = raw.find(_THINK_CLOSE, 0, cut)
    if at < 0:
        return Tags(False, raw[cut:], "", ended)
    spill = raw[at + len(_THINK_CLOSE):cut].replace(_THINK_OPEN, "")
    return Tags(True, raw[cut:], _close_part(spill), ended)


def step(tags: Tags, token: str) -> tuple[Tags, str, str] | None:
    """The state after ``token`` and what it adds to the shown reasoning and
    answer, exactly as splitting the whole field before and after finds;
    None when the shown text would not just grow (a ``</think>`` completed
    inside text already shown) or a "<" comes after the end: such a token
    goes the general way."""
    if "<" not in token and tags.plain:
        return (tags, "", token) if tags.closed else (tags, token, "")
    if tags.ended and "<" in token:
        return None
    text = tags.held + token
    hold = 0 if tags.ended else _partial_tag(text)
    shown, held = text[:len(text) - hold], text[len(text) - hold:]
    if not tags.closed:
        at = shown.find(_THINK_CLOSE)
        if at < 0:
            return Tags(False, held, "", tags.ended), shown.replace(_THINK_OPEN, ""), ""
        head = shown[:at].replace(_THINK_OPEN, "")
        spill = shown[at + len(_THINK_CLOSE):].replace(_THINK_OPEN, "")
        return (Tags(True, held, _close_part(spill), tags.ended), head,
                spill.replace(_THINK_CLOSE, ""))
    part = tags.close_part
    spill = part + shown.replace(_THINK_OPEN, "")
    added = spill.replace(_THINK_CLOSE, "")
    if not added.startswith(part):
        return None
    return Tags(True, held, _close_part(spill), tags.ended), "", added[len(part):]


def _close_part(text: str) -> str:
    """The end of ``text`` that ``</think>`` starts with ("" if none)."""
    at = text.rfind("<", max(0, len(text) - len(_THINK_CLOSE) + 1))
    rest = text[at:] if at >= 0 else ""
    return rest if _THINK_CLOSE.startswith(rest) else ""
