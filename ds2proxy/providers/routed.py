"""A turn over a route's ordered targets, with fall-back before output.

:class:`RoutedTurn` opens the first target that can serve: the pool (a
:class:`~ds2proxy.pipeline.Turn`, with its own account fail-over) or a
provider (:class:`~ds2proxy.providers.turn.ProviderTurn`). A target that
cannot serve — the pool exhausted or cooling, a provider cooling down,
busy, answering 429 or 5xx, timing out — hands over to the next one, while
opening or while nothing has been emitted yet; never once output started.
The target that served is noted on the request record (usage record,
request log, ``X-DS2Proxy-Served-By``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .. import request_record
from ..auth import Caller
from ..canonical import ChatRequest, TurnEvent, TurnResult
from ..collect import TurnCollector
from ..errors import ContentFiltered, NoAccountAvailable, ProxyError, RateLimited, \
    UpstreamError
from ..pipeline import Turn
from .settings import RouteTarget
from .turn import ProviderTurn

if TYPE_CHECKING:
    from ..core import Core
    from .registry import Providers

log = logging.getLogger("ds2proxy.providers")


def can_fall_back(exc: ProxyError) -> bool:
    """Is ``exc`` a target that cannot serve (not a fault of the request)?"""
    return isinstance(exc, (RateLimited, NoAccountAvailable, UpstreamError))


class RoutedTurn:
    """The dialect-facing turn of a routed request."""

    def __init__(self, core: Core, providers: Providers, chat: ChatRequest, caller: Caller,
                 targets: tuple[RouteTarget, ...]) -> None:
        self.core = core
        self.providers = providers
        self.chat = chat
        self.caller = caller
        self.targets = targets
        self._index = -1
        self._current: Turn | ProviderTurn | None = None

    # What the dialects read, from the target that serves.
    @property
    def id(self) -> str:
        return self._turn.id

    @property
    def created(self) -> int:
        return self._turn.created

    @property
    def prompt_tokens(self) -> int:
        return self._turn.prompt_tokens

    @property
    def _turn(self) -> Turn | ProviderTurn:
        assert self._current is not None, "the turn is not open"
        return self._current

    async def open(self) -> None:
        await self._open_from(0)

    async def _open_from(self, start: int) -> None:
        """Open the first target from ``start`` on that can serve."""
        last: ProxyError | None = None
        for index in range(start, len(self.targets)):
            target = self.targets[index]
            turn: Turn | ProviderTurn | None = None
            try:
                turn = self._make(target)
                await turn.open()
            except ProxyError as exc:
                if turn is not None:
                    await turn.aclose()
                self._failed(target, exc)
                if not can_fall_back(exc) or index == len(self.targets) - 1:
                    raise
                log.warning("%s cannot serve %r (%s); trying %s", target.label,
                            self.chat.model.requested, exc.message,
                            self.targets[index + 1].label)
                last = exc
                continue
            except BaseException:  # cancelled while opening: nothing may stay held
                if turn is not None:
                    await turn.aclose()
                    if target.provider is not None:
                        self.providers.finished(target.provider)
                raise
            self._current, self._index = turn, index
            self._note_served(target)
            return
        assert last is not None
        raise last

    def _make(self, target: RouteTarget) -> Turn | ProviderTurn:
        if target.is_pool:
            return Turn(self.core, self.chat, self.caller)
        assert target.provider is not None
        client = self.providers.usable(target.provider)
        return ProviderTurn(client, self.chat, target.model, self.core.config)

    def _note_served(self, target: RouteTarget) -> None:
        record = request_record.current()
        if record is None:
            return
        record.served_by = target.label
        if not target.is_pool:
            record.account = f"provider:{target.provider}"

    def _failed(self, target: RouteTarget, exc: ProxyError) -> None:
        if target.provider is not None:
            self.providers.failed(target.provider, exc)

    async def events(self) -> AsyncIterator[TurnEvent]:
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self) -> AsyncIterator[list[TurnEvent]]:
        """The serving target's events; a failure before any of them moves on
        to the next target, a failure after them is the caller's error."""
        while True:
            turn, target = self._turn, self.targets[self._index]
            emitted = False
            try:
                async for batch in turn.batches():
                    if batch:
                        emitted = True
                        if target.provider is not None:
                            _note_events(batch)
                    yield batch
            except ProxyError as exc:
                self._failed(target, exc)
                if emitted or not can_fall_back(exc) or self._index + 1 >= len(self.targets):
                    raise
                log.warning("%s failed before any output (%s); trying %s", target.label,
                            exc.message, self.targets[self._index + 1].label)
                await turn.aclose()
                await self._open_from(self._index + 1)
                continue
            if target.provider is not None:
                self.providers.succeeded(target.provider)
            return

    async def collect(self) -> TurnResult:
        collector = TurnCollector()
        async for batch in self.batches():
            for event in batch:
                collector.add(event)
        result = collector.result(self.id)
        if result.finish == "content_filter" and not result.text and not result.calls:
            template = getattr(self._current, "filter_template", "")
            raise ContentFiltered(template or "the answer was filtered upstream")
        return result

    async def aclose(self) -> None:
        if self._current is not None:
            await self._current.aclose()
            target = self.targets[self._index]
            if target.provider is not None:
                self.providers.finished(target.provider)


def _note_events(batch: list[Any]) -> None:
    for event in batch:
        if type(event) in request_record.NOTED:
            request_record.note_event(event)
