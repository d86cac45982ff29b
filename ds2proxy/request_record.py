"""What one API request did, gathered while it runs and recorded when it ends.

:func:`ds2proxy.plugin_api.wrap_handler` opens a :class:`RequestRecord` for
each API request and makes it the task's current record, so the core
(authentication, model resolution, the turn) can fill in what it learns
without plugins passing anything along. The same place records it once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from time import perf_counter
from time import time as wall_clock
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .canonical import ToolCallStart, TurnEvent, Usage

REQUEST_ID_HEADER = "X-Request-Id"
# Anthropic's SDKs (and Claude Code's error lines) read the id from this name.
ANTHROPIC_REQUEST_ID_HEADER = "Request-Id"
REQUEST_ID_KEY = web.RequestKey("ds2proxy_request_id", str)
SERVED_BY_HEADER = "X-DS2Proxy-Served-By"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
CLIENT_CLOSED = 499


def request_id_for(request: web.Request) -> str:
    """The client's ``X-Request-Id`` when it is short and plain, else a fresh one."""
    sent = request.headers.get(REQUEST_ID_HEADER, "").strip()
    return sent if _SAFE_ID.match(sent) else "req_" + uuid.uuid4().hex


@web.middleware
async def request_ids(request: web.Request, handler: Any) -> web.StreamResponse:
    """Give every request its id before anything else looks at it."""
    request[REQUEST_ID_KEY] = request_id_for(request)
    return await handler(request)


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Every response names its request id (under OpenAI's and Anthropic's
    header names); the first byte is timed here."""
    request_id = request.get(REQUEST_ID_KEY)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
        response.headers[ANTHROPIC_REQUEST_ID_HEADER] = request_id
    record = current()
    if record is not None:
        record.mark_first_byte()
    served = (record or request.get(RECORD_KEY) or _NO_RECORD).served_by
    if served:
        response.headers[SERVED_BY_HEADER] = header_safe(served)


def header_safe(label: str) -> str:
    """``label`` as a header value: a routed model name is the client's string,
    and a line break in a header makes aiohttp refuse the whole response."""
    return quote(label, safe=":/@+ ")


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    family: str
    route: str
    method: str = "POST"
    time: float = field(default_factory=wall_clock)
    started: float = field(default_factory=perf_counter)
    key_name: str = ""
    key_ref: str = ""  # the key's KeyConfig.ref (a non-secret hash): its counters, its rows
    reserved_tokens: int = 0  # of the key's day, held until this record is charged
    model: str = ""
    native_model: str = ""
    account: str = ""
    status: int = 0
    error_code: str = ""
    error_message: str = ""
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    tool_calls: int = 0
    stream: bool = False
    request_body: str = ""
    served_by: str = ""  # "pool" or "<provider>:<model>": the route target that answered
    # A usage count left for after the response ended (see note_usage_later).
    pending_usage: PendingUsage | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def failed(self) -> bool:
        return self.status >= 400 or bool(self.error_code)

    def mark_first_byte(self) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = round((perf_counter() - self.started) * 1000, 3)

    def finish(self, status: int) -> None:
        self.status = status
        self.latency_ms = round((perf_counter() - self.started) * 1000, 3)
        if self.ttfb_ms is None and status != CLIENT_CLOSED:
            self.ttfb_ms = self.latency_ms

    def fields(self) -> dict[str, Any]:
        """The record as flat fields for the store, the log and the admin API
        (every value is immutable, so a shallow read is a copy)."""
        data = {name: getattr(self, name) for name in _FLAT}
        data["total_tokens"] = self.total_tokens
        return data


_FLAT = tuple(f.name for f in fields(RequestRecord)
              if f.name not in ("started", "pending_usage", "reserved_tokens"))


@dataclass(frozen=True, slots=True)
class PendingUsage:
    """A turn's usage, counted on demand: ``count()`` gives the exact
    :class:`Usage`; ``chars`` is how much text it still has to encode (a
    long one is counted off the loop)."""

    count: Callable[[], Usage]
    chars: int


class _Slot:
    """The running request's record, one indirection away: asyncio copies
    the context into every callback handle it makes (a pooled upstream
    connection's socket reader among them, which outlives the request), so
    the context holds this slot and the slot is emptied when the request
    ends; the record is then free to go."""

    __slots__ = ("record",)

    def __init__(self, record: RequestRecord) -> None:
        self.record: RequestRecord | None = record


_CURRENT: ContextVar[_Slot | None] = ContextVar("ds2proxy_request", default=None)
# The record kept on its request too: a JSON answer is prepared after the handler returned.
RECORD_KEY = web.RequestKey("ds2proxy_request_record", RequestRecord)
_NO_RECORD = RequestRecord(request_id="", family="", route="")


def enter(record: RequestRecord) -> Token[_Slot | None]:
    """Make ``record`` the current one for this task (and what it starts)."""
    return _CURRENT.set(_Slot(record))


def leave(token: Token[_Slot | None]) -> None:
    """End :func:`enter`: the slot is emptied in every context copy too."""
    slot = _CURRENT.get()
    if slot is not None:
        slot.record = None
    _CURRENT.reset(token)


def current() -> RequestRecord | None:
    slot = _CURRENT.get()
    return slot.record if slot is not None else None


NOTED = frozenset({Usage, ToolCallStart})


def note_event(event: TurnEvent) -> None:
    """Fold what a turn event says about usage into the current record
    (callers on the per-chunk path check ``type(event) in NOTED`` first)."""
    record = current()
    if record is None:
        return
    if isinstance(event, Usage):
        fold_usage(record, event)
        record.pending_usage = None  # the usage the client got is the last word
    elif isinstance(event, ToolCallStart):
        record.tool_calls += 1


def note_usage_later(pending: PendingUsage) -> None:
    """The turn's usage is counted after the response ended (its client
    did not ask for it in the stream); the record waits for it."""
    record = current()
    if record is not None:
        record.pending_usage = pending


def fold_usage(record: RequestRecord, usage: Usage) -> None:
    record.prompt_tokens = usage.prompt_tokens
    record.completion_tokens = usage.completion_tokens
    record.reasoning_tokens = usage.reasoning_tokens


def hold_tokens(tokens: int) -> int:
    """Put a quota reservation on the current record, given back when the
    record is charged; what the caller must give back itself (no record)."""
    record = current()
    if record is None or not record.key_ref:
        return tokens
    record.reserved_tokens += tokens
    return 0


def note_account(identifier: str) -> None:
    record = current()
    if record is not None:
        record.account = identifier
