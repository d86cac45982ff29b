"""One chat turn served by an OpenAI-compatible provider.

It offers what a pool :class:`~ds2proxy.pipeline.Turn` offers the dialects
(``id``, ``created``, ``prompt_tokens``, :meth:`batches`, :meth:`collect`),
so a plugin renders it without knowing who answered. The provider is always
asked to stream; a non-stream client gets the collected result.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import aiohttp

from ..canonical import ChatRequest, TurnEvent, TurnResult, Usage
from ..collect import TurnCollector
from ..errors import InvalidRequest, UpstreamError
from ..tokens import count_tokens_async
from .client import ProviderClient, sse_reads
from .request import chat_body
from .stream import ChunkTranslator, final_events


class ProviderTurn:
    """A turn on ``client`` for the provider's ``model``."""

    def __init__(self, client: ProviderClient, chat: ChatRequest, model: str) -> None:
        settings = client.settings
        if chat.tools and not settings.tools and chat.tool_choice.mode != "none":
            raise InvalidRequest(
                f"model '{chat.model.requested}' is served by provider {settings.name}, which "
                "is configured without tool calls (tools: false); send no tools",
                param="tools", code="tools_not_supported")
        self.client = client
        self.chat = chat
        self.model = model
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.prompt_tokens = 0
        self.emitted = False
        self._body = chat_body(chat, model, stream=True)
        self._response: aiohttp.ClientResponse | None = None
        self._reserved = False

    @property
    def label(self) -> str:
        return f"{self.client.name}:{self.model}"

    async def open(self) -> None:
        """Reach the provider's 200 (a slot, then the request); the prompt is
        counted for the dialects that announce it before the answer."""
        self.client.reserve()
        self._reserved = True
        self.prompt_tokens = await count_tokens_async(_prompt_text(self._body))
        self._response = await self.client.open_chat(self._body)

    async def events(self) -> AsyncIterator[TurnEvent]:
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self) -> AsyncIterator[list[TurnEvent]]:
        """Canonical events, a batch per socket read of the provider's stream."""
        assert self._response is not None
        translator = ChunkTranslator(think_tags=self.client.settings.reasoning == "think_tags",
                                     tools=self.chat.tools)
        try:
            async for chunks in sse_reads(self._response, self.client):
                out: list[TurnEvent] = []
                for data in chunks:
                    out += translator.chunk(data)
                if out:
                    self.emitted = True
                    yield out
            if translator.finish is None:
                raise UpstreamError(f"provider {self.client.name} ended its answer early")
            tail = translator.end() + final_events(translator, await self._counted(translator))
            if translator.usage is not None:
                self.prompt_tokens = translator.usage.prompt_tokens
            self.emitted = True
            yield tail
        finally:
            await self.aclose()

    async def _counted(self, translator: ChunkTranslator) -> Usage:
        """Our own count, for a provider that reports no usage."""
        if translator.usage is not None:
            return translator.usage
        return Usage(self.prompt_tokens, await count_tokens_async("".join(translator.text_parts)))

    async def collect(self) -> TurnResult:
        collector = TurnCollector()
        async for batch in self.batches():
            for event in batch:
                collector.add(event)
        return collector.result(self.id)

    async def aclose(self) -> None:
        """Release the response and the provider slot (idempotent)."""
        if self._response is not None:
            self._response.release()
            self._response = None
        if self._reserved:
            self._reserved = False
            self.client.release()


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
