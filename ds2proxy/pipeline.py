"""One chat turn, end to end: credentials → session → PoW → completion →
continue rounds → canonical events.

:meth:`Turn.open` does everything up to the first upstream byte and fails
over to another managed account on account-level errors, so a failure there
becomes a plain HTTP error. :meth:`Turn.events` then streams; a failure after
events went out ends the stream with an :class:`ErrorEvent`, never silently.
The lease is released in ``finally`` on every path: normal end, error,
client disconnect (the consumer stops iterating) and cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp

from . import pow as pow_solver
from . import request_record
from .auth import Caller
from .canonical import ChatRequest, ErrorEvent, TurnEvent, TurnResult
from .collect import TurnCollector
from .errors import (
    ContentFiltered,
    InvalidRequest,
    OutputInvalid,
    ProxyError,
    RateLimited,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from .failover import Attempts
from .health import classify
from .overlap import both
from .shaping import ShapingSettings, TurnShaper
from .structured import JSONOutputError, repair_prompt
from .turn_text import plan_turn_text, render_turn, turn_prompt_tokens
from .upstream.client import (
    COMPLETION_PATH,
    POW_REFUSED_CODES,
    UpstreamCallError,
    UpstreamStream,
)
from .upstream.events import ContentFiltered as FilterEvent
from .upstream.events import Hint, TextChunk, UpstreamFault
from .upstream.files import (
    PendingUpload,
    plan_uploads,
    ref_file_ids,
    upload_all,
    with_uploaded_ids,
)
from .upstream.patch import StreamParser
from .upstream.session import Credentials, with_refresh

if TYPE_CHECKING:
    from .core import Core
    from .scheduler import Lease

log = logging.getLogger("ds2proxy.pipeline")

CONTINUE_PATH = "/api/v0/chat/continue"
EMPTY_RETRY_SUFFIX = ("\n\nPrevious reply had no visible output. Please regenerate the visible "
                      "final answer or tool call now.")
_SAMPLING = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "presence_penalty",
             "frequency_penalty", "stop")
HISTORY_MIME = "text/plain"


class Turn:
    def __init__(self, core: Core, chat: ChatRequest, caller: Caller) -> None:
        self.core = core
        self.chat = chat
        self.caller = caller
        self.id = uuid.uuid4().hex
        self.created = int(time.time())
        # Inline payloads to upload once an account is leased (400 over the limit).
        self._uploads = plan_uploads(chat.messages, chat.model.model_type)
        self._file_ids = ref_file_ids(chat)
        # Settings as at the turn's start: a fail-over sends the same shape.
        self._config = core.config
        self._sent_chat = chat
        self._history, self._history_text, self.prompt = plan_turn_text(chat, self._config)
        # Counted in open(), beside the upstream setup (large texts off the loop).
        self.prompt_tokens = 0
        self.continue_calls = 0
        self.account: str | None = None
        self._creds: Credentials | None = None
        self._resp: UpstreamStream | None = None
        self._session_id = ""
        self._pow_header = ""
        self._attempts = Attempts(core.pool, self._config.upstream,
                                  pinned=bool(caller.target_account))
        # Whether the current attempt's upstream has produced output yet.
        self._heard = False
        # Every session this turn created (fail-overs included), for cleanup.
        self._opened: list[tuple[Credentials, str]] = []
        self._closed = False
        self.filter_template = ""

    # -- prompt ----------------------------------------------------------------

    def _render(self, chat: ChatRequest) -> None:
        """Prompt, history file and token count again for ``chat``, whose
        attachments now carry this account's file ids."""
        self._history_text, self.prompt = render_turn(chat, self._config, self._history)

    # -- opening (before the first byte) ------------------------------------------

    async def open(self) -> None:
        """Reach an open upstream stream and count the prompt tokens meanwhile
        (a cold count of a long prompt runs in a thread)."""
        counting = asyncio.ensure_future(self._count_prompt())
        try:
            await self._reach_stream()
        except BaseException:
            counting.cancel()
            raise
        await counting
        if counting.result() != (self._history_text, self.prompt):
            await self._count_prompt()  # uploads renamed files in the prompt

    async def _count_prompt(self) -> tuple[str, str]:
        """Count the texts as they are now; returns what was counted."""
        counted = (self._history_text, self.prompt)
        self.prompt_tokens = await turn_prompt_tokens(*counted, self._uploads)
        return counted

    async def _reach_stream(self) -> None:
        """Reach an open upstream stream, failing over between managed accounts
        within the attempt cap and the first-output deadline."""
        while True:
            creds = await self._credentials()
            try:
                await self._attempts.within(self._open_on(creds))
            except UpstreamError as exc:
                self._blame(creds, exc)
                creds.release()
                self.core.monitor.account_error(creds.identifier, exc.detail or exc.message)
                if not self._attempts.may_retry(exc, managed=creds.managed):
                    raise self._attempts.final(exc) from None
                log.warning("account %s failed before streaming (%s); trying another",
                            creds.identifier, exc.message)
                continue
            except BaseException:
                creds.release()
                raise
            self._creds = creds
            self.account = creds.identifier
            request_record.note_account(creds.identifier if creds.managed else "")
            return

    def _blame(self, creds: Credentials | None, exc: BaseException) -> None:
        """Tell the pool's health tracker when a failure is the account's."""
        failure = classify(exc)
        if creds is not None and creds.managed and failure is not None:
            self.core.pool.health.failed(creds.identifier, failure)

    def _credit(self) -> None:
        if self._creds is not None and self._creds.managed:
            self.core.pool.health.succeeded(self._creds.identifier)

    async def _credentials(self) -> Credentials:
        if not self.caller.managed:
            self._attempts.begin("passthrough")
            return Credentials(token=self.caller.credential)
        while True:
            lease = await self._lease()
            self._attempts.begin(lease.account.identifier)
            try:
                token = await self._attempts.within(self.core.keeper.ensure(lease.account))
            except UpstreamError as exc:
                lease.release()
                if not self._attempts.may_retry(exc, managed=True):
                    raise self._attempts.final(exc) from None
                log.warning("login failed for %s: %s", lease.account.identifier, exc.message)
                continue
            except BaseException:
                lease.release()
                raise
            return Credentials(token=token, lease=lease)

    async def _lease(self) -> Lease:
        """A lease on an account this turn has not tried. Waiting for one
        during a fail-over counts against the deadline, and a full pool then
        reports the failure that caused the fail-over, not a 429."""
        acquire = self.core.pool.acquire(target=self.caller.target_account,
                                         exclude=frozenset(self._attempts.tried))
        last = self._attempts.last
        if last is None:
            return await acquire
        try:
            return await self._attempts.within(acquire)
        except RateLimited:
            raise self._attempts.final(last) from None

    async def _open_on(self, creds: Credentials) -> None:
        # The challenge does not depend on the session: one round trip for both.
        self._session_id, pow_header = await both(self._new_session(creds),
                                                  self._solve_pow(creds))
        self.id = self._session_id
        await self._attach_uploads(creds)
        await self._attach_history(creds)
        await self._start_completion(creds, self.prompt, parent=None, pow_header=pow_header)

    async def _new_session(self, creds: Credentials) -> str:
        session_id = await with_refresh(creds, self.core.keeper, self.core.client.create_session)
        self._opened.append((creds, session_id))
        return session_id

    async def _attach_uploads(self, creds: Credentials) -> None:
        """Upload the inline attachments on this account, then reference them
        by id and name them in the prompt (files belong to one account, so a
        fail-over uploads again and gets new ids)."""
        if not self._uploads:
            return
        ids = await upload_all(self.core.client, creds, self.core.keeper,
                               self._uploads.values())
        self._sent_chat = with_uploaded_ids(self.chat, ids)
        self._file_ids = ref_file_ids(self._sent_chat)
        self._render(self._sent_chat)

    async def _attach_history(self, creds: Credentials) -> None:
        """Upload the history file on this account and reference it first
        (§6). It is rendered after the inline uploads so it names their ids;
        a fail-over uploads it again, as files belong to one account."""
        if self._history is None:
            return
        upload = PendingUpload(key="history", data=self._history_text.encode("utf-8"),
                               kind="history file", name=self._history.file_name,
                               mime_type=HISTORY_MIME, model_type=self.chat.model.model_type)
        ids = await upload_all(self.core.client, creds, self.core.keeper, [upload])
        self._file_ids = list(dict.fromkeys([ids[upload.key], *ref_file_ids(self._sent_chat)]))

    async def _start_completion(self, creds: Credentials, prompt: str, parent: int | None,
                                pow_header: str = "") -> None:
        body = self._completion_body(prompt, parent)
        for attempt in range(2):
            self._pow_header = pow_header if pow_header and not attempt else (
                await self._solve_pow(creds))
            try:
                self._resp = await with_refresh(
                    creds, self.core.keeper,
                    lambda t: self.core.client.open_stream(COMPLETION_PATH, t, self._pow_header,
                                                           body))
                return
            except UpstreamCallError as exc:
                # A refused PoW answer gets one fresh challenge (spec §12).
                if exc.envelope.code not in POW_REFUSED_CODES or attempt:
                    raise

    async def _solve_pow(self, creds: Credentials) -> str:
        challenge = await with_refresh(creds, self.core.keeper,
                                       self.core.client.create_pow_challenge)
        started = time.perf_counter()
        answer = await pow_solver.solve(challenge)
        self.core.metrics.time_pow(started)
        return pow_solver.encode_header(challenge, answer)

    def _completion_body(self, prompt: str, parent: int | None) -> dict[str, Any]:
        chat = self.chat
        body: dict[str, Any] = {
            "chat_session_id": self._session_id,
            "model_type": chat.model.model_type,
            "parent_message_id": parent,
            "prompt": prompt,
            "ref_file_ids": list(self._file_ids),
            "thinking_enabled": chat.thinking_enabled,
            "search_enabled": chat.model.search,
        }
        body.update({k: v for k, v in chat.sampling.items() if k in _SAMPLING and v is not None})
        return body

    # -- streaming ---------------------------------------------------------------

    async def events(self) -> AsyncIterator[TurnEvent]:
        """Canonical events; failures after output become one ErrorEvent."""
        try:
            while True:
                shaper = self._new_shaper()
                try:
                    async for event in self._before_deadline(self._run(shaper)):
                        if type(event) in request_record.NOTED:
                            request_record.note_event(event)
                        yield event
                    self._credit()
                    return
                except ProxyError as exc:
                    self._blame(self._creds, exc)
                    if shaper.emitted or not self._can_fail_over(exc):
                        error = exc if shaper.emitted else self._attempts.final(exc)
                        self.core.monitor.request_error(error.operator_message)
                        request_record.note_event(ErrorEvent(error))
                        yield ErrorEvent(error)
                        return
                    try:
                        await self._fail_over(exc)
                    except ProxyError as again:
                        request_record.note_event(ErrorEvent(again))
                        yield ErrorEvent(again)
                        return
                except Exception as exc:
                    # A bug must still end the stream in the family's own
                    # error shape, never as a silent cut the client mistakes
                    # for a dropped connection.
                    log.exception("turn %s failed unexpectedly", self.id)
                    error = ProxyError(f"internal error: {type(exc).__name__}")
                    self.core.monitor.request_error(error.message)
                    request_record.note_event(ErrorEvent(error))
                    yield ErrorEvent(error)
                    return
        finally:
            await self.aclose()

    def _new_shaper(self) -> TurnShaper:
        cfg = self.core.config
        settings = ShapingSettings(cfg.toolcall_mode, cfg.toolcall_early_emit, cfg.citation_style)
        self._parser = StreamParser(thinking_enabled=self.chat.thinking_enabled)
        return TurnShaper(self.chat, settings, self.prompt_tokens, self._citations)

    def _citations(self) -> list[tuple[int, str, str]]:
        return self._parser.citations()

    async def _before_deadline(self, events: AsyncIterator[TurnEvent]
                               ) -> AsyncIterator[TurnEvent]:
        """``events``, bounded by the first-output deadline until the
        upstream's first output arrives."""
        iterator = aiter(events)
        while True:
            try:
                if self._heard:
                    event = await anext(iterator)
                else:
                    event = await self._attempts.within(anext(iterator))
            except StopAsyncIteration:
                return
            yield event

    def _can_fail_over(self, exc: ProxyError) -> bool:
        return self._creds is not None and self._attempts.may_retry(
            exc, managed=self._creds.managed)

    async def _fail_over(self, exc: ProxyError) -> None:
        assert self._creds is not None
        log.warning("account %s failed before any output (%s); trying another",
                    self._creds.identifier, exc.message)
        self._heard = False
        self._release_stream()
        self._creds.release()
        self._creds = None
        await self.open()

    async def _run(self, shaper: TurnShaper) -> AsyncIterator[TurnEvent]:
        retried_empty = repaired = False
        while True:
            async for event in self._consume(shaper):
                yield event
            for event in shaper.flush():
                yield event
            done = shaper.stopped or shaper.filtered is not None
            if not done and not shaper.has_visible_output:
                if retried_empty:
                    # An account-level rate limit: fails over like an upstream 429.
                    raise UpstreamRateLimited(
                        "Upstream account hit a rate limit and returned "
                        + ("reasoning without visible output." if shaper.reasoning
                           else "empty output."), retry_after=10, code="upstream_empty_output")
                retried_empty = True
                shaper.restart_answer()
                await self._ask_again(self.prompt + EMPTY_RETRY_SUFFIX)
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
                    await self._ask_again(repair_prompt(str(exc), self.chat.response_format))
                    continue
                for event in events:
                    yield event
            break
        for event in shaper.tail():
            yield event

    async def _consume(self, shaper: TurnShaper) -> AsyncIterator[TurnEvent]:
        """Feed one upstream answer (all its rounds) through the shaper."""
        hint = None
        async for up in self._read_rounds():
            if isinstance(up, TextChunk):
                self._heard = True
                events = (shaper.on_reasoning(up.text) if up.kind == "thinking"
                          else shaper.on_answer(up.text))
                for event in events:
                    yield event
                if shaper.stopped:
                    return
            elif isinstance(up, FilterEvent):
                self.filter_template = up.template
                shaper.on_filtered(up.template)
            elif isinstance(up, Hint):
                hint = up
            elif isinstance(up, UpstreamFault):
                raise UpstreamError(f"upstream error: {up.message}")
        if hint is not None and hint.finish_reason == "input_exceeds_limit":
            raise InvalidRequest("the conversation exceeds the upstream input limit",
                                 code="context_length_exceeded")
        if hint is None and shaper.filtered is None and not self._parser.ended:
            raise UpstreamError("upstream stream ended before the answer was complete")

    async def _read_rounds(self) -> AsyncIterator[Any]:
        parser = self._parser
        rounds = 0
        while True:
            parser.start_round()
            resp = self._resp
            assert resp is not None
            try:
                async for line in resp.lines():
                    for event in parser.feed_line(line):
                        yield event
            except TimeoutError:
                resp.release("silence timeout")
                silence = self._config.upstream.silence_timeout_seconds
                raise UpstreamTimeout(f"the upstream stream sent nothing for {silence:g} s "
                                      "(upstream.silence_timeout_seconds)") from None
            except aiohttp.ClientError as exc:
                resp.release(type(exc).__name__)
                raise UpstreamError(f"upstream stream broke: {type(exc).__name__}") from None
            finally:
                resp.release()
            limit = self.core.config.upstream.max_continue_rounds
            if not parser.should_continue or rounds >= limit or not parser.response_message_id:
                return
            rounds += 1
            self.continue_calls += 1
            await self._continue(parser.response_message_id)

    async def _continue(self, message_id: int) -> None:
        assert self._creds is not None
        body = {"chat_session_id": self._session_id, "message_id": message_id,
                "fallback_to_resume": True}
        self._resp = await with_refresh(
            self._creds, self.core.keeper,
            lambda t: self.core.client.open_stream(CONTINUE_PATH, t, self._pow_header, body))

    async def _ask_again(self, prompt: str) -> None:
        """A follow-up message in the same session (spec §12 empty-output retry,
        JSON repair), with a fresh PoW and a fresh parser."""
        assert self._creds is not None
        parent = self._parser.response_message_id
        log.info("asking again in the same session on %s", self._creds.identifier)
        self._parser = StreamParser(thinking_enabled=self.chat.thinking_enabled)
        await self._start_completion(self._creds, prompt, parent)

    # -- non-stream ----------------------------------------------------------------

    async def collect(self) -> TurnResult:
        """The whole turn; errors raise (nothing has been sent to the client)."""
        collector = TurnCollector()
        async for event in self.events():
            if isinstance(event, ErrorEvent):
                raise event.error
            collector.add(event)
        result = collector.result(self.id)
        if result.finish == "content_filter" and not result.text and not result.calls:
            raise ContentFiltered(self.filter_template or "the answer was filtered upstream")
        return result

    # -- cleanup -------------------------------------------------------------------

    def _release_stream(self) -> None:
        if self._resp is not None:
            self._resp.release()
            self._resp = None

    async def aclose(self) -> None:
        """Release the upstream response and the account lease (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._release_stream()
        if self._creds is not None:
            self._creds.release()
        self._clean_up_sessions()

    def _clean_up_sessions(self) -> None:
        """With ``upstream.session_cleanup: single``, delete the sessions this
        turn opened, in the background (the lease is already free)."""
        if self.core.config.upstream.session_cleanup != "single":
            return
        for creds, session_id in self._opened:
            self.core.janitor.schedule(creds.token, [session_id])
        self._opened.clear()
