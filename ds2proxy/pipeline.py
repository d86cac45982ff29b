"""One chat turn, end to end: credentials → session → PoW → completion →
continue rounds → canonical events.

:meth:`Turn.open` (its base, :class:`~ds2proxy.turn_opening.TurnOpening`)
does everything up to the first upstream byte and fails over to another
managed account on account-level errors, so a failure there becomes a plain
HTTP error. :meth:`Turn.events` then streams; a failure
raises its :class:`ProxyError`, which :func:`ds2proxy.relay.relay` turns
into an HTTP error or an in-band one (never a silent cut).
The lease is released in ``finally`` on every path: normal end, error,
client disconnect (the consumer stops iterating) and cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from . import request_record
from .auth import Caller
from .canonical import ChatRequest, TurnEvent, TurnResult, Usage
from .collect import TurnCollector
from .errors import (
    ContentFiltered,
    InvalidRequest,
    OutputInvalid,
    ProxyError,
    UpstreamError,
    UpstreamRateLimited,
)
from .shaping import ShapingSettings, TurnShaper
from .structured import JSONOutputError, repair_prompt
from .tokens import count_tokens_async
from .turn_opening import TurnOpening
from .upstream.client import UpstreamStream
from .upstream.events import ContentFiltered as FilterEvent
from .upstream.events import Hint, TextChunk, UpstreamFault
from .upstream.stream_parser import INCOMPLETE, StreamParser
from .upstream.rounds import read_rounds
from .usage_recorder import OFF_LOOP_USAGE_CHARS

if TYPE_CHECKING:
    from .core import Core

log = logging.getLogger("ds2proxy.pipeline")

EMPTY_RETRY_SUFFIX = ("\n\nPrevious reply had no visible output. Please regenerate the visible "
                      "final answer or tool call now.")


class Turn(TurnOpening):
    def __init__(self, core: Core, chat: ChatRequest, caller: Caller) -> None:
        super().__init__(core, chat, caller)
        # Whether the current attempt's upstream has produced output yet.
        self._heard = False
        self._closed = False
        self.filter_template = ""
        # Set by count_usage_after() (usage is not part of the stream) and by
        # take_text_runs() (the consumer renders TextRun events).
        self._usage_after = self._text_runs = False
        # The answer's shaper; whether its usage reached the record (see aclose).
        self._shaper: TurnShaper | None = None
        self._usage_noted = False

    # -- streaming ---------------------------------------------------------------

    def count_usage_after(self) -> None:
        """The client receives no usage: end the stream without counting
        it, and have the request record count it after the response ended
        (exact all the same; a long answer is counted off the loop)."""
        self._usage_after = True

    def take_text_runs(self) -> None:
        """Hand runs of plain answer texts over as one TextRun each (the relay asks)."""
        self._text_runs = True

    async def events(self) -> AsyncIterator[TurnEvent]:
        """Canonical events, one by one (see :meth:`batches`)."""
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self) -> AsyncIterator[list[TurnEvent]]:
        """Canonical events, in batches of what one upstream read produced.

        A failure raises its ProxyError (after a fail-over, when one is
        allowed and nothing was emitted yet); the relay or the route wrapper
        reports it (the usage produced by then is noted in :meth:`aclose`)."""
        try:
            while True:
                shaper = self._new_shaper()
                try:
                    batches = self._attempts.until_heard(self._run(shaper),
                                                         lambda: self._heard)
                    async for batch in batches:
                        for event in batch:
                            if type(event) in request_record.NOTED:
                                request_record.note_event(event)
                                self._usage_noted |= type(event) is Usage
                        yield batch
                    self._credit()
                    return
                except ProxyError as exc:
                    self._blame(self._creds, exc)
                    if shaper.emitted or not self._can_fail_over(exc):
                        raise (exc if shaper.emitted else self._attempts.final(exc)) from None
                    await self._fail_over(exc)
                except Exception as exc:
                    log.exception("turn %s failed unexpectedly", self.id)
                    raise ProxyError(f"internal error: {type(exc).__name__}") from exc
        finally:
            await self.aclose()

    def _new_shaper(self) -> TurnShaper:
        cfg = self._config  # as the prompt was built: its tool markup is what comes back
        settings = ShapingSettings(cfg.toolcall.mode, cfg.toolcall.early_emit_confidence,
                                   cfg.search.citation_style)
        self._parser = StreamParser(thinking_enabled=self.chat.thinking_enabled)
        shaper = TurnShaper(self.chat, settings, self.prompt_tokens, self._citations)
        shaper.usage_after = self._usage_after
        shaper.text_runs = self._text_runs
        self._shaper = shaper
        return shaper

    def _citations(self) -> list[tuple[int, str, str]]:
        return self._parser.citations()

    def _can_fail_over(self, exc: ProxyError) -> bool:
        return self._creds is not None and self._attempts.may_retry(
            exc, managed=self._creds.managed)

    async def _fail_over(self, exc: ProxyError) -> None:
        assert self._creds is not None
        log.warning("account %s failed before any output (%s); trying another",
                    self._creds.identifier, exc.message)
        # As a failure while opening: the caller never hears of it, the operator does.
        self.core.monitor.account_error(self._creds.identifier, exc.detail or exc.message)
        self._heard = False
        self._upstream.release_stream()
        self._creds.release()
        self._creds = None
        await self.open()

    async def _run(self, shaper: TurnShaper) -> AsyncIterator[list[TurnEvent]]:
        retried_empty = repaired = False
        while True:
            async for batch in self._consume(shaper):
                yield batch
            flushed = shaper.flush()
            if flushed:
                yield flushed
            done = shaper.stopped or shaper.filtered is not None
            if not done and not shaper.has_visible_output and not (
                    retried_empty and shaper.answered):
                if retried_empty:
                    # An account-level rate limit: fails over like an upstream 429.
                    raise UpstreamRateLimited(
                        "Upstream account hit a rate limit and returned "
                        + ("reasoning without visible output." if shaper.reasoning
                           else "empty output."), retry_after=10, code="upstream_empty_output")
                retried_empty = True
                shaper.restart_answer()
                await self._ask_again(self.prompt + EMPTY_RETRY_SUFFIX, shaper)
                continue
            if shaper.json_pending:
                try:
                    events = shaper.finish_json()
                except JSONOutputError as exc:
                    if repaired:
                        raise OutputInvalid(
                            f"the model did not return the requested JSON: {exc}") from None
                    repaired = True
                    shaper.restart_answer()
                    await self._ask_again(repair_prompt(str(exc), self.chat.response_format),
                                          shaper)
                    continue
                if events:
                    yield events
            break
        if not shaper.usage_after and shaper.uncounted_chars > OFF_LOOP_USAGE_CHARS:
            # One huge word (no safe boundary) takes seconds: tail() reads it.
            await asyncio.to_thread(shaper.usage)
        tail = shaper.tail()
        if shaper.usage_after:
            self._note_usage_later(shaper)
        if tail:
            yield tail

    def _note_usage_later(self, shaper: TurnShaper) -> None:
        """Have the request record count ``shaper``'s usage after the response."""
        self._usage_noted = True
        request_record.note_usage_later(
            request_record.PendingUsage(shaper.usage, shaper.uncounted_chars))

    async def _consume(self, shaper: TurnShaper) -> AsyncIterator[list[TurnEvent]]:
        """Feed one upstream answer (all its rounds) through the shaper, a
        batch of canonical events per upstream read."""
        hint = None
        resp = self._upstream.stream
        assert resp is not None
        reads = read_rounds(resp, self._parser, self._continue,
                            max_rounds=self._config.upstream.max_continue_rounds,
                            silence=self._config.upstream.silence_timeout_seconds)
        on_answer, on_reasoning, may_stop = shaper.on_answer, shaper.on_reasoning, shaper.may_stop
        # Nothing can stop the answer midway: the parser hands over runs of
        # answer tokens, which the shaper takes in one go.
        self._parser.answer_runs = not may_stop
        async for batch in reads:
            out: list[TurnEvent] = []
            for up in batch:
                if type(up) is list:
                    if not self._heard:
                        self._hear()
                    out += shaper.on_answers(up)
                elif type(up) is TextChunk:
                    if not self._heard:
                        self._hear()
                    out += on_reasoning(up.text) if up.kind == "thinking" else on_answer(up.text)
                    if may_stop and shaper.stopped:
                        break
                elif isinstance(up, FilterEvent):
                    self.filter_template = up.template
                    shaper.on_filtered(up.template)
                elif isinstance(up, Hint):
                    hint = up
                elif isinstance(up, UpstreamFault):
                    if out:
                        yield out
                    raise UpstreamError(f"upstream error: {up.message}")
            if out:
                yield out
            if shaper.stopped:
                await reads.aclose()
                return
        if hint is not None and hint.finish_reason == "input_exceeds_limit":
            raise InvalidRequest("the conversation exceeds the upstream input limit",
                                 code="context_length_exceeded")
        if hint is None and shaper.filtered is None and not self._parser.ended:
            raise UpstreamError("upstream stream ended before the answer was complete")
        if self._parser.status == INCOMPLETE:
            # Still unfinished when the continue rounds ran out: a cut answer.
            shaper.length_hit = True

    def _hear(self) -> None:
        """The upstream's first output: the first-output deadline is over,
        whether or not the client sees anything of it yet."""
        self._heard = True
        self._attempts.heard()

    async def _continue(self, message_id: int) -> UpstreamStream:
        """Open the next continue round of the current answer."""
        assert self._creds is not None
        return await self._upstream.continue_round(self._creds, message_id)

    async def _ask_again(self, prompt: str, shaper: TurnShaper) -> None:
        """A follow-up message in the same session (spec §12 empty-output retry,
        JSON repair), with a fresh PoW and a fresh parser. Its prompt is sent
        upstream too, so usage counts its tokens."""
        assert self._creds is not None
        extra = await count_tokens_async(prompt)
        self.prompt_tokens += extra
        shaper.prompt_tokens += extra
        parent = self._parser.response_message_id
        log.info("asking again in the same session on %s", self._creds.identifier)
        self._parser = StreamParser(thinking_enabled=self.chat.thinking_enabled)
        await self._upstream.complete(self._creds, prompt, parent, self._file_ids)

    # -- non-stream ----------------------------------------------------------------

    async def collect(self) -> TurnResult:
        """The whole turn; errors raise (nothing has been sent to the client)."""
        collector = TurnCollector()
        self._text_runs = True  # the collector takes TextRun events
        async for batch in self.batches():
            for event in batch:
                collector.add(event)
        result = collector.result(self.id)
        if result.finish == "content_filter" and not result.text and not result.calls:
            raise ContentFiltered(self.filter_template or "the answer was filtered upstream")
        return result

    # -- cleanup -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Release the upstream response and the account lease (idempotent).
        A turn ended before its usage went out (client gone, upstream failed
        after output) records the prompt and what the model produced so far."""
        if self._closed:
            return
        self._closed = True
        shaper, self._shaper = self._shaper, None  # it refers back to the turn: no cycle
        if shaper is not None and shaper.produced and not self._usage_noted:
            self._note_usage_later(shaper)
        self._upstream.release_stream()
        if self._creds is not None:
            self._creds.release()
        self._clean_up_sessions()

    def _clean_up_sessions(self) -> None:
        """With ``upstream.session_cleanup: single``, delete the sessions this
        turn opened, in the background (the lease is already free)."""
        if self.core.config.upstream.session_cleanup == "single":
            self._upstream.delete_sessions(self.core.janitor)
