"""One chat turn served by an OpenAI-compatible provider.

A provider configured with ``tools: false`` gets the tools written into
the prompt and its answer shaped like a pool answer (:mod:`.emulate`).
It offers what a pool :class:`~ds2proxy.pipeline.Turn` offers the dialects
(``id``, ``created``, ``prompt_tokens``, :meth:`batches`, :meth:`collect`),
so a plugin renders it without knowing who answered. The provider is always
asked to stream; a non-stream client gets the collected result.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp

from .. import request_record
from ..canonical import ChatRequest, Finish, TurnEvent, TurnResult, Usage
from ..collect import TurnCollector
from ..config import Config
from ..errors import InvalidRequest, OutputInvalid, UpstreamError
from ..held_answer import HeldAnswer
from ..structured import JSONOutputError, repair_prompt
from ..tokens import count_tokens, count_tokens_async
from .answers import StreamEnd, sse_reads
from .client import ProviderClient
from .emulate import EmulatedTools, emulated_body
from .request import (
    as_json_object,
    chat_body,
    refused_json_schema,
    refused_limit_field,
    with_limit_field,
)
from .settings import ProviderSettings
from .stream import ChunkTranslator, final_events, own_usage

log = logging.getLogger("ds2proxy.providers")


class ProviderTurn:
    """A turn on ``client`` for the provider's ``model``."""

    def __init__(self, client: ProviderClient, chat: ChatRequest, model: str,
                 config: Config) -> None:
        self.client = client
        self.chat = chat
        self.model = model
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.prompt_tokens = 0
        self.emitted = False
        self._config = config
        self._emulate, self._body = provider_body(chat, config, client.settings, model,
                                                  client.limit_field(model))
        if client.refuses_json_schema and _asks_json_schema(self._body):
            self._body = as_json_object(self._body, chat)
        self._response: aiohttp.ClientResponse | None = None
        self._reserved = False
        # The answer's text so far, until the final usage event went out
        # (then None): an early end records its count (see aclose).
        self._unreported: ChunkTranslator | None = None

    @property
    def label(self) -> str:
        return f"{self.client.name}:{self.model}"

    async def open(self) -> None:
        """Reach the provider's 200 (a slot, then the request); the prompt is
        counted for the dialects that announce it before the answer."""
        self.client.reserve()
        self._reserved = True
        refits: set[str] = set()
        while True:
            try:
                self._response = await self.client.open_chat(self._body)
                break
            except InvalidRequest as exc:
                if not self._refit(exc.message, refits):
                    raise
        self.prompt_tokens = await count_tokens_async(_prompt_text(self._body))

    def _refit(self, message: str, done: set[str]) -> bool:
        """Change the body after a 400 that refused a part some providers
        lack, each kind once, and remember it for the next requests: the
        output limit under its other name (for this model), JSON mode with
        the schema in the prompt for json_schema (for this provider)."""
        other = (refused_limit_field(self._body, message)
                 if self.client.settings.max_tokens_field == "auto" else None)
        if other is not None and "limit" not in done:
            done.add("limit")
            self.client.learn_limit_field(self.model, other)
            self._body = with_limit_field(self._body, other)
            return True
        if refused_json_schema(self._body, message) and "schema" not in done:
            done.add("schema")
            log.info("provider %s refused a json_schema response_format; JSON mode "
                     "is asked for instead from now on", self.client.name)
            self.client.refuses_json_schema = True
            self._body = as_json_object(self._body, self.chat)
            return True
        return False

    async def events(self) -> AsyncIterator[TurnEvent]:
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self) -> AsyncIterator[list[TurnEvent]]:
        """Canonical events, a batch per socket read of the provider's stream.
        A JSON-mode or enum answer is held and settled as the pool's is, asked
        again once (the bad answer and a repair message added) when unusable."""
        fmt = self.chat.response_format
        hold = HeldAnswer(fmt) if fmt.type != "text" and not self._emulate else None
        repaired, spent = False, None  # spent: the usage of the answer asked again
        try:
            while True:
                tail: list[TurnEvent] = []
                async for batch in self._attempt(hold):
                    if hold is None or not batch or type(batch[-1]) is not Finish:
                        yield batch
                    else:
                        tail = batch
                if hold is None:
                    return
                try:
                    tail = hold.settle(tail)
                except JSONOutputError as exc:
                    if repaired:
                        raise OutputInvalid("the model did not return the requested "
                                            f"JSON: {exc}") from None  # as the pool says
                    repaired, spent = True, _usage_of(tail)
                    await self._ask_again(hold, str(exc))
                    continue
                yield _with_spent(tail, spent)
                return
        finally:
            await self.aclose()

    async def _attempt(self, hold: HeldAnswer | None) -> AsyncIterator[list[TurnEvent]]:
        """One answer of the open response; the last batch ends with Finish."""
        assert self._response is not None
        mode = self.client.settings.reasoning
        # A client that turned thinking off (or asked for a -nothinking name)
        # gets no reasoning, whatever the provider sends.
        keep = self.chat.thinking is not False and not self.chat.model.force_no_thinking
        translator = ChunkTranslator(think_tags=mode == "think_tags", tools=self.chat.tools,
                                     reasoning_field=mode != "none", keep_reasoning=keep)
        emulator = (EmulatedTools(self.chat, self._config, self.prompt_tokens)
                    if self._emulate else None)
        self._unreported = translator
        end = StreamEnd()
        async for chunks in sse_reads(self._response, self.client, end):
            out: list[TurnEvent] = []
            for data in chunks:
                out += translator.chunk(data)
            if emulator is not None:
                out = emulator.feed(out)
            if hold is not None:
                out = hold.feed(out)
            if out:
                self.emitted = True
                yield out
        # Some providers never send a finish_reason: their [DONE] ends the
        # answer; a connection that just closed without either cut it short.
        if translator.finish is None and not end.done:
            raise UpstreamError(f"provider {self.client.name} ended its answer early")
        if emulator is not None:
            tail = emulator.feed(translator.end()) + emulator.end(translator.usage)
        else:
            tail = translator.end() + final_events(translator,
                                                   await self._counted(translator))
        if translator.usage is not None:
            self.prompt_tokens = translator.usage.prompt_tokens
        self.emitted = True
        self._unreported = None
        yield tail

    async def _ask_again(self, hold: HeldAnswer, problem: str) -> None:
        """The same conversation with the unusable answer and a repair message."""
        assert self._response is not None
        self._response.release()
        self._response = None
        written = "".join(hold.written) or " "
        hold.written.clear()
        self._body = {**self._body, "messages": [
            *self._body["messages"], {"role": "assistant", "content": written},
            {"role": "user", "content": repair_prompt(problem, self.chat.response_format)}]}
        self._response = await self.client.open_chat(self._body)

    async def _counted(self, translator: ChunkTranslator) -> Usage:
        """Our own count, for a provider that reports no usage."""
        if translator.usage is not None:
            return translator.usage
        counts = [await count_tokens_async(text) for text in translator.own_texts()]
        return own_usage(self.prompt_tokens, counts)

    async def collect(self) -> TurnResult:
        collector = TurnCollector()
        async for batch in self.batches():
            for event in batch:
                collector.add(event)
        return collector.result(self.id)

    async def aclose(self) -> None:
        """Release the response and the provider slot (idempotent). A turn
        ended before its usage went out (client gone, provider failed after
        output) records the prompt and its own count of the text so far."""
        if self._unreported is not None and self._unreported.wrote:
            request_record.note_usage_later(_counted_later(self.prompt_tokens, self._unreported))
        self._unreported = None
        if self._response is not None:
            self._response.release()
            self._response = None
        if self._reserved:
            self._reserved = False
            self.client.release()


def provider_body(chat: ChatRequest, config: Config, settings: ProviderSettings,
                  model: str, limit_field: str = "max_tokens") -> tuple[bool, dict]:
    """(whether the tools are written into the prompt, the request body): a
    provider without native tools gets them written into one prompt."""
    emulate = bool(chat.tools) and not settings.tools and chat.tool_choice.mode != "none"
    return emulate, (emulated_body(chat, config, model, limit_field) if emulate
                     else chat_body(chat, model, stream=True, limit_field=limit_field))


async def provider_prompt_tokens(chat: ChatRequest, config: Config, settings: ProviderSettings,
                                 model: str) -> int:
    """The prompt count a provider turn reports when the provider gives none
    (count_tokens routes of a provider's model use it too)."""
    return await count_tokens_async(_prompt_text(provider_body(chat, config, settings, model)[1]))


def _asks_json_schema(body: dict) -> bool:
    return (body.get("response_format") or {}).get("type") == "json_schema"


def _usage_of(batch: list[TurnEvent]) -> Usage | None:
    return next((e for e in batch if type(e) is Usage), None)


def _with_spent(batch: list[TurnEvent], spent: Usage | None) -> list[TurnEvent]:
    """The final batch with the usage of an answer asked again added in:
    the provider was asked, and spent tokens, twice."""
    if spent is None:
        return batch
    return [Usage(*(a + b for a, b in zip(
        (e.prompt_tokens, e.completion_tokens, e.reasoning_tokens, e.cached_tokens),
        (spent.prompt_tokens, spent.completion_tokens, spent.reasoning_tokens,
         spent.cached_tokens)))) if type(e) is Usage else e for e in batch]


def _counted_later(prompt_tokens: int, translator: ChunkTranslator
                   ) -> request_record.PendingUsage:
    """The usage of an answer cut short, counted after the response."""
    texts = translator.own_texts()
    return request_record.PendingUsage(
        lambda: own_usage(prompt_tokens, [count_tokens(text) for text in texts]),
        sum(map(len, texts)))


def _prompt_text(body: dict) -> str:
    """The texts of the request's messages, for the prompt estimate."""
    parts: list[str] = []
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict)]
        for call in message.get("tool_calls") or ():
            parts.append(call["function"]["arguments"])
    return "\n".join(parts)
