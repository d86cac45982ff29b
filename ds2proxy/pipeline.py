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

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp

from . import pow as pow_solver
from .auth import Caller
from .canonical import (
    ChatRequest,
    Citation,
    CollectedCall,
    ErrorEvent,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    TurnEvent,
    TurnResult,
    Usage,
)
from .config import Config, HistoryFileSettings
from .errors import (
    ContentFiltered,
    InvalidRequest,
    OutputInvalid,
    ProxyError,
    UpstreamError,
    UpstreamRateLimited,
)
from .health import classify
from .prompt.build import build_prompt
from .prompt.history_file import continuation_prompt, render_history_file
from .structured import JSONOutputError, format_instructions, repair_prompt
from .shaping import ShapingSettings, TurnShaper
from .tokens import count_prompt_tokens, count_tokens
from .toolcall.prompt import build_tool_prompt
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
    total_bytes,
    upload_all,
    with_uploaded_ids,
)
from .upstream.patch import StreamParser
from .upstream.session import Credentials, with_refresh

if TYPE_CHECKING:
    from .core import Core

log = logging.getLogger("ds2proxy.pipeline")

CONTINUE_PATH = "/api/v0/chat/continue"
EMPTY_RETRY_SUFFIX = ("\n\nPrevious reply had no visible output. Please regenerate the visible "
                      "final answer or tool call now.")
_SAMPLING = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "presence_penalty",
             "frequency_penalty", "stop")
HISTORY_MIME = "text/plain"


def _control_text(chat: ChatRequest, config: Config) -> tuple[str, str]:
    """The tool prompt (with JSON-mode instructions) and the thinking injection."""
    tool_prompt = ""
    if chat.tools and config.toolcall_mode == "feature_match":
        tool_prompt = build_tool_prompt(chat.tools, chat.tool_choice,
                                        single_call=not chat.parallel_tool_calls)
    extra = format_instructions(chat.response_format)
    tool_prompt = "\n\n".join(part for part in (tool_prompt, extra) if part)
    injection = config.thinking_injection if chat.thinking_enabled else ""
    return tool_prompt, injection


def build_turn_prompt(chat: ChatRequest, config: Config) -> str:
    """The upstream prompt for a request: messages, tool prompt, JSON-mode
    instructions and (when on) the thinking injection. count_tokens routes use
    it too, so their figure is exactly what a turn would send."""
    tool_prompt, injection = _control_text(chat, config)
    return build_prompt(chat.messages, tool_prompt=tool_prompt, thinking_injection=injection)


def history_file_for(prompt: str, config: Config) -> HistoryFileSettings | None:
    """The history-file settings when this prompt should go as a file (§6)."""
    settings = config.history_file
    return settings if settings.enabled and len(prompt) > settings.min_prompt_chars else None


def render_turn(chat: ChatRequest, config: Config, history: HistoryFileSettings | None
                ) -> tuple[str, str]:
    """(history file text or "", live prompt) for a turn whose shape is
    decided. With a history file the whole conversation goes in the file and
    the live prompt only refers to it, keeping the turn's control text."""
    if history is None:
        return "", build_turn_prompt(chat, config)
    tool_prompt, injection = _control_text(chat, config)
    return (render_history_file(chat.messages, history.file_name),
            continuation_prompt(history.file_name, tool_prompt=tool_prompt,
                                thinking_injection=injection))


def plan_turn_text(chat: ChatRequest, config: Config
                   ) -> tuple[HistoryFileSettings | None, str, str]:
    """Decide once whether the conversation goes as a history file, and
    render it: (history settings or None, file text or "", live prompt)."""
    plain = build_turn_prompt(chat, config)
    history = history_file_for(plain, config)
    if history is None:
        return None, "", plain
    return (history, *render_turn(chat, config, history))


def turn_prompt_tokens(history_text: str, prompt: str, attachment_bytes: int) -> int:
    """Usage counts everything the model reads: history file, live prompt
    and the uploaded attachments."""
    return count_tokens(history_text) + count_prompt_tokens(
        prompt, attachment_bytes=attachment_bytes)


def estimate_prompt_tokens(chat: ChatRequest, config: Config) -> int:
    """Prompt tokens a turn for ``chat`` would report, without uploading
    anything (count_tokens routes)."""
    uploads = plan_uploads(chat.messages, chat.model.model_type)
    _, history_text, prompt = plan_turn_text(chat, config)
    return turn_prompt_tokens(history_text, prompt, total_bytes(uploads))


class Turn:
    def __init__(self, core: Core, chat: ChatRequest, caller: Caller) -> None:
        self.core = core
        self.chat = chat
        self.caller = caller
        self.id = uuid.uuid4().hex
        self.created = int(time.time())
        # Inline payloads to upload once an account is leased (400 over the limit).
        self._uploads = plan_uploads(chat.messages, chat.model.model_type)
        self._upload_bytes = total_bytes(self._uploads)
        self._file_ids = ref_file_ids(chat)
        # Settings as at the turn's start: a fail-over sends the same shape.
        self._config = core.config
        self._sent_chat = chat
        self._history, self._history_text, self.prompt = plan_turn_text(chat, self._config)
        self.prompt_tokens = turn_prompt_tokens(self._history_text, self.prompt,
                                                self._upload_bytes)
        self.continue_calls = 0
        self.account: str | None = None
        self._creds: Credentials | None = None
        self._resp: UpstreamStream | None = None
        self._session_id = ""
        self._pow_header = ""
        self._tried: set[str] = set()
        # Every session this turn created (fail-overs included), for cleanup.
        self._opened: list[tuple[Credentials, str]] = []
        self._closed = False
        self.filter_template = ""

    # -- prompt ----------------------------------------------------------------

    def _render(self, chat: ChatRequest) -> None:
        """Prompt, history file and token count again for ``chat``, whose
        attachments now carry this account's file ids."""
        self._history_text, self.prompt = render_turn(chat, self._config, self._history)
        self.prompt_tokens = turn_prompt_tokens(self._history_text, self.prompt,
                                                self._upload_bytes)

    # -- opening (before the first byte) ------------------------------------------

    async def open(self) -> None:
        """Reach an open upstream stream, failing over between managed accounts."""
        last: ProxyError | None = None
        while True:
            if self.caller.managed and last is not None and not self._may_try_another():
                raise last
            creds = await self._credentials()
            try:
                await self._open_on(creds)
            except UpstreamError as exc:
                self._blame(creds, exc)
                creds.release()
                self._tried.add(creds.identifier)
                self.core.monitor.account_error(creds.identifier, exc.detail or exc.message)
                if not creds.managed or self.caller.target_account or not exc.retryable:
                    raise
                log.warning("account %s failed before streaming (%s); trying another",
                            creds.identifier, exc.message)
                last = exc
                continue
            except BaseException:
                creds.release()
                raise
            self._creds = creds
            self.account = creds.identifier
            return

    def _blame(self, creds: Credentials | None, exc: BaseException) -> None:
        """Tell the pool's health tracker when a failure is the account's."""
        failure = classify(exc)
        if creds is not None and creds.managed and failure is not None:
            self.core.pool.health.failed(creds.identifier, failure)

    def _credit(self) -> None:
        if self._creds is not None and self._creds.managed:
            self.core.pool.health.succeeded(self._creds.identifier)

    def _may_try_another(self) -> bool:
        total = len(self.core.pool.accounts())
        return len(self._tried) < min(total, 3)

    async def _credentials(self) -> Credentials:
        if not self.caller.managed:
            return Credentials(token=self.caller.credential)
        while True:
            lease = await self.core.pool.acquire(target=self.caller.target_account,
                                                 exclude=frozenset(self._tried))
            try:
                token = await self.core.keeper.ensure(lease.account)
            except UpstreamError as exc:
                lease.release()
                self._tried.add(lease.account.identifier)
                if self.caller.target_account or not self._may_try_another():
                    raise
                log.warning("login failed for %s: %s", lease.account.identifier, exc.message)
                continue
            except BaseException:
                lease.release()
                raise
            return Credentials(token=token, lease=lease)

    async def _open_on(self, creds: Credentials) -> None:
        client = self.core.client
        self._session_id = await with_refresh(creds, self.core.keeper, client.create_session)
        self._opened.append((creds, self._session_id))
        self.id = self._session_id
        await self._attach_uploads(creds)
        await self._attach_history(creds)
        await self._start_completion(creds, self.prompt, parent=None)

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

    async def _start_completion(self, creds: Credentials, prompt: str, parent: int | None) -> None:
        body = self._completion_body(prompt, parent)
        for attempt in range(2):
            self._pow_header = await self._solve_pow(creds)
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
        answer = await pow_solver.solve(challenge)
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
                    async for event in self._run(shaper):
                        yield event
                    self._credit()
                    return
                except ProxyError as exc:
                    self._blame(self._creds, exc)
                    if shaper.emitted or not self._can_fail_over(exc):
                        self.core.monitor.request_error(exc.operator_message)
                        yield ErrorEvent(exc)
                        return
                    try:
                        await self._fail_over(exc)
                    except ProxyError as again:
                        yield ErrorEvent(again)
                        return
                except Exception as exc:
                    # A bug must still end the stream in the family's own
                    # error shape, never as a silent cut the client mistakes
                    # for a dropped connection.
                    log.exception("turn %s failed unexpectedly", self.id)
                    error = ProxyError(f"internal error: {type(exc).__name__}")
                    self.core.monitor.request_error(error.message)
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

    def _can_fail_over(self, exc: ProxyError) -> bool:
        creds = self._creds
        if not (isinstance(exc, UpstreamError) and exc.retryable and creds is not None
                and creds.managed and not self.caller.target_account):
            return False
        self._tried.add(creds.identifier)  # the failing account counts as tried
        return self._may_try_another()

    async def _fail_over(self, exc: ProxyError) -> None:
        assert self._creds is not None
        log.warning("account %s failed before any output (%s); trying another",
                    self._creds.identifier, exc.message)
        self._tried.add(self._creds.identifier)
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
            except (aiohttp.ClientError, TimeoutError) as exc:
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
        result = TurnResult(id=self.id)
        async for event in self.events():
            if isinstance(event, ErrorEvent):
                raise event.error
            accumulate(result, event)
        result.id = self.id
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


def accumulate(result: TurnResult, event: TurnEvent) -> None:
    """Fold one event into a TurnResult (the non-stream view of a turn)."""
    if isinstance(event, TextDelta):
        result.text += event.text
        if result.segments and result.segments[-1][0] == "text":
            result.segments[-1] = ("text", result.segments[-1][1] + event.text)
        else:
            result.segments.append(("text", event.text))
    elif isinstance(event, ReasoningDelta):
        result.reasoning += event.text
    elif isinstance(event, ToolCallStart):
        result.calls.append(CollectedCall(event.id, event.name, "", event.kind))
        result.segments.append(("call", event.index))
    elif isinstance(event, ToolCallArgs):
        # Call indexes count from 0 in emission order across the response.
        result.calls[event.index].arguments += event.arguments
    elif isinstance(event, Citation):
        result.citations.append(event)
    elif isinstance(event, Usage):
        result.usage = event
    elif isinstance(event, Finish):
        result.finish = event.reason
