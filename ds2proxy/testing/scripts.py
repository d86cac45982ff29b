"""What the fake upstream answers to one completion call.

A test enqueues scripts on :class:`~ds2proxy.testing.FakeDeepSeek`; each
completion call takes the next one (else the default, an echo of the
prompt's last user text). A script is one of:

* :class:`Scripted` – text streamed in the real patch format, with optional
  search, INCOMPLETE + continue rounds, content filter or a ``hint`` refusal;
* :class:`Replay` – a recording's rounds served byte for byte;
* :class:`HttpFault` – an HTTP error before any stream;
* :class:`EnvelopeFault` – HTTP 200 with a JSON error envelope instead of SSE.

:class:`Delivery` adds transport faults to streams: slow chunks, silence
with ``: `` comments, a drop after some events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = "你好，这个问题我暂时无法回答，让我们换个话题再聊聊吧。"
HINT_TEXT = "Too many requests, please try again later."


@dataclass(frozen=True)
class Delivery:
    """How a stream's SSE events reach the socket (applies to every round)."""

    chunk_delay: float = 0.0          # seconds before each event
    silence: float = 0.0              # seconds of ``: `` comments after ``ready``
    silence_after: int = 0            # … or after this event instead (0 is ``ready``)
    comment_every: float = 0.5        # spacing of those comments
    drop_after: int | None = None     # stop after this many events, no terminal status
    abort: bool = False               # with ``drop_after``: reset the connection
    content_type: str = "text/event-stream; charset=utf-8"  # media types ignore case

    @property
    def paced(self) -> bool:
        return bool(self.chunk_delay or self.silence or self.drop_after is not None)


@dataclass(frozen=True)
class SearchHit:
    """One web page the scripted search finds and opens."""

    url: str
    title: str
    snippet: str = ""


@dataclass(frozen=True)
class Scripted:
    """A turn streamed in the real patch format.

    ``thinking`` / ``answer`` are whole texts cut into ``chunk_size``
    characters, or the exact chunks. ``[reference:N]`` markers in the answer
    are sent as citation BATCHes whose ``references[N]`` opens ``search[N]``.
    ``incomplete_after`` ends a round ``INCOMPLETE`` after that many chunks
    (cumulative counts, one per continue round); the continue snapshot then
    holds ``snapshot_overshoot`` characters never streamed as tokens.
    ``flat`` streams the older form (spec §10.8): the text on the flat
    ``response/thinking_content`` / ``response/content`` fields, markers as
    plain text, no fragments (so no search, TIP or template either).
    """

    answer: str | Sequence[str] = ""
    thinking: str | Sequence[str] = ""
    chunk_size: int = 3
    search: Sequence[SearchHit] = ()
    search_query: str = ""
    incomplete_after: int | Sequence[int] = ()
    snapshot_overshoot: int = 0
    content_filter: bool = False
    template: str = TEMPLATE
    hint: str | None = None           # e.g. "rate_limit_reached": refuse right after ready
    tip: bool = True
    finish_event: bool = True
    title: str | None = "Fake chat"   # sent on a session's first turn only
    usage: int | None = None
    flat: bool = False
    delivery: Delivery = Delivery()

    @property
    def cuts(self) -> list[int]:
        cuts = self.incomplete_after
        return sorted([cuts] if isinstance(cuts, int) else list(cuts))


@dataclass(frozen=True)
class Replay:
    """A recording (its ``.sse`` file or sample folder): round k answers the k-th call."""

    path: str | Path
    delivery: Delivery = Delivery()


@dataclass(frozen=True)
class HttpFault:
    """An HTTP error status before the stream (e.g. 500, 502, 429)."""

    status: int = 500
    body: str = "upstream unavailable"
    headers: Mapping[str, str] = field(default_factory=dict)
    cut: bool = False  # (a completion's) the body stops short of its length: a reset


@dataclass(frozen=True)
class EnvelopeFault:
    """HTTP 200 with a JSON error envelope where the stream should be."""

    code: int = 40301
    msg: str = "INVALID_POW_RESPONSE"
    biz_code: int = 0
    biz_msg: str = ""


Script = Scripted | Replay | HttpFault | EnvelopeFault


@dataclass(frozen=True)
class Misbehaviour:
    """How one account misbehaves until told otherwise (account-health tests).

    ``completion`` answers every completion of the account (e.g.
    ``HttpFault(429)`` or ``Scripted(hint="rate_limit_reached")``);
    ``login_error`` is the business error its logins get; ``banned`` answers
    every call with its tokens ``40003`` (a refused token, again after each
    fresh login, as a banned account sees it); ``http`` answers every call
    of the account to an endpoint with an HTTP error, by endpoint below
    ``/api/v0/`` (e.g. ``{"users/login": HttpFault(429, headers={"Retry-After":
    "900"})}``).
    """

    completion: Script | None = None
    login_error: tuple[int, str] | None = None
    banned: bool = False
    http: Mapping[str, HttpFault] = field(default_factory=dict)

_TURN_MARKERS = re.compile(r"<｜(?:User|Assistant|System|Tool|end▁of▁\w+|begin▁of▁sentence)｜>")


def echo_script(prompt: str) -> Scripted:
    """The default answer: deterministic, and quoting the end of the prompt."""
    said = last_user_text(prompt)[-200:] or "(nothing)"
    return Scripted(
        thinking=f"The user wrote: {said}\nI will repeat it back.",
        answer=f"This is the ds2proxy fake upstream. You said: {said}",
    )


def last_user_text(prompt: str) -> str:
    """The last user message of a DeepSeek prompt string (the whole prompt if unmarked)."""
    tail = prompt.rsplit("<｜User｜>", 1)[-1]
    return _TURN_MARKERS.split(tail, 1)[0].strip()
