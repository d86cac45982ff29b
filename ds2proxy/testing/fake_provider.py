"""A fake OpenAI-compatible provider, served by aiohttp on a real port.

    fake = FakeProvider(models=["qwen-max"], api_key="sk-test")
    base_url = await fake.start()            # http://127.0.0.1:<port>/v1
    fake.enqueue(ProviderReply(text="hi", reasoning="hmm", reasoning_as="think_tags",
                               cuts=[3, 9]))
    … point a provider at base_url …
    fake.refused_fields["max_tokens"] = "Unsupported parameter: 'max_tokens' …"
    fake.chat_requests()                     # the bodies it received
    fake.embedding_batches                   # the size of every embeddings batch
    await fake.close()

``/v1/chat/completions`` answers the next enqueued :class:`ProviderReply`
(else ``default_reply``), streamed (``stream: true``, usage in a last chunk
with ``stream_options.include_usage``) or not. ``/v1/models`` lists
``models``; ``/v1/embeddings`` returns deterministic unit vectors of
``dimensions`` (default 8) and records each batch's size. Every request is
recorded. Run it on its own with ``python -m ds2proxy.testing.fake_provider``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..embeddings import DeterministicEmbeddings
from .local_server import LocalServer
from .provider_replies import ProviderReply, chunk, completion_object, stream_deltas, usage_of

DEFAULT_DIMENSIONS = 8
# The parsed request body, kept on the request by the gate.
BODY: Any = (web.RequestKey("fake_provider.body", dict) if hasattr(web, "RequestKey")
             else "fake_provider.body")


@dataclass
class ProviderCall:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


class FakeProvider(LocalServer):
    """Scripted replies, the call log and the aiohttp app serving them."""

    base_path = "/v1"

    def __init__(self, models: Iterable[str] = ("fake-model",), *, api_key: str = "",
                 default_reply: ProviderReply | None = None) -> None:
        self.models = list(models)
        self.api_key = api_key
        self.default_reply = default_reply or ProviderReply(text="Hello from the provider.")
        self.queue: list[ProviderReply] = []
        self.embedding_faults: list[ProviderReply] = []
        self.calls: list[ProviderCall] = []
        self.embedding_batches: list[int] = []
        # Body fields chat calls are refused for (400, with this message), as
        # OpenAI's reasoning models refuse max_tokens.
        self.refused_fields: dict[str, str] = {}
        self.dropped = 0  # connections cut after output started
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()

    # -- test API ------------------------------------------------------------

    def enqueue(self, *replies: ProviderReply) -> None:
        """Replies for the next chat calls, first in first out."""
        self.queue.extend(replies)

    def fail_embeddings(self, *faults: ProviderReply) -> None:
        """Failures (status, retry_after) for the next embeddings calls."""
        self.embedding_faults.extend(faults)

    def chat_requests(self) -> list[dict[str, Any]]:
        """The bodies of every ``/chat/completions`` call, in order."""
        return [c.body for c in self.calls if c.path.endswith("/chat/completions")]

    async def wait_calls(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` requests have arrived (a condition, not a sleep)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.calls) >= count)

    # -- server --------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.add_routes([web.post("/v1/chat/completions", self.chat),
                        web.get("/v1/models", self.list_models),
                        web.post("/v1/embeddings", self.embeddings)])
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Record the call (body included) and check the key."""
        body: Any = {}
        if request.method == "POST":
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                body = None
        async with self._changed:
            self.calls.append(ProviderCall(request.path, dict(request.headers), body or {}))
            self._changed.notify_all()
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object", "invalid_request_error")
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided", "invalid_api_key")
        request[BODY] = body
        return await handler(request)

    # -- routes --------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        refused = next((key for key in self.refused_fields if key in body), None)
        if refused is not None:
            return _error(400, self.refused_fields[refused], "invalid_request_error")
        reply = self.queue.pop(0) if self.queue else self.default_reply
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.raw is not None:
            return await _raw(request, reply)
        if reply.status != 200:
            return _error(reply.status, reply.error_message, "server_error"
                          if reply.status >= 500 else "rate_limit_exceeded", reply.retry_after)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        if not body.get("stream"):
            return web.json_response(completion_object(reply, body, ident, created))
        return await self._stream(request, reply, body, ident, created)

    async def _stream(self, request: web.Request, reply: ProviderReply, body: dict[str, Any],
                      ident: str, created: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        model = body.get("model")
        for n, delta in enumerate(stream_deltas(reply)):
            if reply.drop_after_chunks is not None and n > reply.drop_after_chunks:
                self.dropped += 1
                assert request.transport is not None
                request.transport.close()  # output started, then the provider is gone
                return response
            if reply.chunk_delay and n:
                await asyncio.sleep(reply.chunk_delay)
            await _send(response, chunk(ident, created, model, delta), reply.write_bytes)
        await _send(response, chunk(ident, created, model, {}, reply.finish), reply.write_bytes)
        if (body.get("stream_options") or {}).get("include_usage"):
            await _send(response, chunk(ident, created, model, None,
                                        usage=usage_of(reply, body)), reply.write_bytes)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = request[BODY]
        if self.embedding_faults:
            fault = self.embedding_faults.pop(0)
            return _error(fault.status, fault.error_message, "server_error", fault.retry_after)
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        self.embedding_batches.append(len(texts))
        vectors = await DeterministicEmbeddings(dimensions).embed([str(t) for t in texts])
        tokens = sum(len(str(t).split()) for t in texts)
        return web.json_response({
            "object": "list", "model": body.get("model"),
            "data": [{"object": "embedding", "index": i, "embedding": v}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def _send(response: web.StreamResponse, data: dict[str, Any],
                write_bytes: int | None = None) -> None:
    """One SSE event; with ``write_bytes``, written (and flushed) that many
    bytes at a time, so a reader meets lines and UTF-8 characters cut anywhere."""
    line = b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"
    if not write_bytes:
        await response.write(line)
        return
    for start in range(0, len(line), write_bytes):
        await response.write(line[start:start + write_bytes])


async def _raw(request: web.Request, reply: ProviderReply) -> web.StreamResponse:
    """``reply.raw`` as it is, flushed every ``write_bytes`` bytes (``chunk_delay``
    apart, so the reader meets each piece in a read of its own)."""
    assert reply.raw is not None
    response = web.StreamResponse(status=reply.status,
                                  headers={"Content-Type": reply.content_type})
    await response.prepare(request)
    step = reply.write_bytes or len(reply.raw) or 1
    for start in range(0, len(reply.raw), step):
        if start and reply.chunk_delay:
            await asyncio.sleep(reply.chunk_delay)
        await response.write(reply.raw[start:start + step])
    await response.write_eof()
    return response


def _error(status: int, message: str, code: str, retry_after: str | None = None
           ) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response({"error": {"message": message, "type": code, "param": None,
                                        "code": code}}, status=status, headers=headers)


# -- on its own ------------------------------------------------------------------


async def serve(host: str, port: int, models: list[str], api_key: str,
                reply: ProviderReply | None = None) -> None:
    fake = FakeProvider(models, api_key=api_key, default_reply=reply)
    url = await fake.start(host, port)
    print(f"fake OpenAI-compatible provider on {url} (models: {', '.join(models)})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ds2proxy.testing.fake_provider",
                                     description="Serve a fake OpenAI-compatible provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5003)
    parser.add_argument("--model", action="append", default=[], help="a model it lists")
    parser.add_argument("--api-key", default="", help="require this bearer key")
    parser.add_argument("--answer-chars", type=int, default=0,
                        help="answer every call with this many characters")
    parser.add_argument("--chunk-chars", type=int, default=4, help="characters per chunk")
    args = parser.parse_args(argv)
    reply = ProviderReply(text="ab" * (args.answer_chars // 2), chunk_chars=args.chunk_chars,
                          usage=(10, args.answer_chars)) if args.answer_chars else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.model or ["fake-model"], args.api_key,
                          reply))


if __name__ == "__main__":
    main()
