"""Large request bodies: an unknown caller is refused before its body is
read (every family, pass-through tokens included), the size limit applies
to the declared length before reading, and a finished turn is freed at once
(no reference cycle keeping its prompt until the next full gc)."""

from __future__ import annotations

import asyncio
import gc
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from ds2proxy.pipeline import Turn

DECLARED = 50 * 1024 * 1024  # announced, never sent

# Every POST route that reads a JSON body, and how its 401 names itself.
ROUTES = {
    "/v1/chat/completions": "openai",
    "/v1/responses": "openai",
    "/v1/embeddings": "openai",
    "/v1/messages": "anthropic",
    "/anthropic/v1/messages/count_tokens": "anthropic",
    "/v1beta/models/gemini-2.5-flash:generateContent": "google",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse": "google",
    "/v1beta/models/gemini-2.5-flash:countTokens": "google",
    "/api/v1/chat/completions": "openai",
    "/api/v1/messages": "anthropic",
    "/lm/v2/chat/completions": "openai",
    "/hello/v1/ask": "openai",
}


async def head_only(url: str, path: str, credential: str, length: int = DECLARED
                    ) -> tuple[int, dict]:
    """Send a request head announcing ``length`` body bytes but no body, and
    read the answer; a server that waited for the body would never answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Authorization: Bearer {credential}\r\nContent-Length: {length}\r\n"
                      "\r\n").encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        size = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:"))
        return status, orjson.loads(await reader.readexactly(size))
    finally:
        writer.close()


def family_of(body: dict) -> str:
    if body.get("type") == "error":
        return "anthropic"
    if "status" in body["error"]:
        return "google"
    return "openai"


@pytest.mark.parametrize("path", list(ROUTES))
async def test_an_unknown_caller_is_refused_before_the_body_is_read(proxy_factory, path):
    proxy = await proxy_factory({"auth": {"allow_passthrough": False}})
    status, body = await head_only(proxy.url, path, "not-a-key")
    assert status == 401
    assert family_of(body) == ROUTES[path]


async def test_a_made_up_passthrough_token_is_refused_before_a_large_body(proxy):
    status, body = await head_only(proxy.url, "/v1/chat/completions", "made-up-token")
    assert status == 401
    assert "not one of this server's configured keys" in body["error"]["message"]
    assert len(proxy.fake.calls_to("chat_session/fetch_page")) == 1
    assert proxy.fake.calls_to("chat/completion") == []


async def test_a_good_passthrough_token_is_checked_once_for_large_bodies(proxy):
    token = proxy.fake.issue_token("alice@example.com")
    big = {"model": "deepseek-chat",
           "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
    small = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http:
        for body in (small, big, big):
            async with http.post(proxy.url + "/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200, await resp.text()
    # The small body needed no check; the second large one was remembered.
    assert len(proxy.fake.calls_to("chat_session/fetch_page")) == 1
    assert len(proxy.fake.calls_to("chat/completion")) == 3


async def test_a_body_over_the_limit_is_refused_by_its_declared_length(proxy_factory):
    proxy = await proxy_factory({"runtime": {"max_body_bytes": 4096}})
    status, body = await head_only(proxy.url, "/v1/chat/completions", proxy.key, length=5000)
    assert status == 413
    assert body["error"]["code"] == "request_too_large"


async def test_a_chunked_body_over_the_limit_is_refused(proxy_factory):
    proxy = await proxy_factory({"runtime": {"max_body_bytes": 4096}})

    async def chunks():
        yield b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", data=chunks(),
                             headers=proxy.headers()) as resp:
            assert resp.status == 413
            body = await resp.json()
    assert body["error"]["code"] == "request_too_large"


def turns_alive() -> bool:
    return any(isinstance(o, Turn) for o in gc.get_objects())


TEXT = "x" * 100_000
TURNS = {
    "openai": ("/v1/chat/completions",
               {"model": "deepseek-chat", "messages": [{"role": "user", "content": TEXT}]}),
    "responses": ("/v1/responses", {"model": "deepseek-chat", "input": TEXT}),
    "anthropic": ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 64,
                                   "messages": [{"role": "user", "content": TEXT}]}),
    "gemini": ("/v1beta/models/gemini-2.5-flash:generateContent",
               {"contents": [{"role": "user", "parts": [{"text": TEXT}]}]}),
    "degpt": ("/api/v1/chat/completions",
              {"model": "auto", "messages": [{"role": "user", "content": TEXT}]}),
    "lm": ("/lm/v2/chat/completions",
           {"model": "deepseek-chat", "messages": [{"role": "user", "content": TEXT}]}),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("family", list(TURNS))
async def test_a_finished_turn_is_freed_without_the_cycle_collector(proxy, family, stream):
    path, body = TURNS[family]
    if stream and family == "gemini":
        path = path.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
    elif stream:
        body = {**body, "stream": True}
    headers = {**proxy.headers(), "x-goog-api-key": proxy.key}
    gc.collect()
    gc.disable()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(proxy.url + path, json=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
        # The handler may still be finishing: wait (boundedly) for the turn
        # to go, which only reference counting can do with gc disabled.
        for _ in range(300):
            if not turns_alive():
                break
            await asyncio.sleep(0.01)
        assert not turns_alive()
    finally:
        gc.enable()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/api/chat",
                                  "/v1beta/models/gemini-2.5-flash:generateContent",
                                  "/chat/completions", "/lm/v2/chat/completions"])
async def test_a_broken_gzip_body_is_a_400_in_the_family_shape(proxy, caplog, path):
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + path, data=b"not gzip", headers={
                **proxy.headers(), "Content-Type": "application/json",
                "Content-Encoding": "gzip"}) as resp:
            assert resp.status == 400
            body = await resp.json()
    text = body["error"] if isinstance(body["error"], str) else body["error"]["message"]
    assert "could not be read" in text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert proxy.core.pool.inflight == 0 and proxy.fake.calls_to("chat/completion") == []


@pytest.mark.parametrize("headers, data, status", [
    ({"Content-Encoding": "gzip"}, b"not gzip", 400),
    ({"Content-Length": "5000"}, b"x" * 5000, 413),
])
async def test_a_body_left_unread_closes_the_connection_and_says_so(proxy_factory, headers,
                                                                    data, status):
    """The server will not read the rest of such a body, so the connection
    ends: without ``Connection: close`` a keep-alive client sent its next
    request down it and got a disconnect instead of an answer."""
    proxy = await proxy_factory({"runtime": {"max_body_bytes": 4096}})
    good = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
        async with http.post(proxy.url + "/v1/chat/completions", data=data, headers={
                **proxy.headers(), "Content-Type": "application/json", **headers}) as resp:
            assert resp.status == status and resp.headers["Connection"] == "close"
            await resp.read()
        async with http.post(proxy.url + "/v1/chat/completions", json=good,
                             headers=proxy.headers()) as resp:
            assert resp.status == 200
    assert proxy.core.pool.inflight == 0
