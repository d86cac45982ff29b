"""The playground relays a call to this server's own API: when that call
fails (nothing listening, the connection dropped, no answer) the page gets a
502/504 in the admin error shape, or, once the stream has begun, an error
event it can show, never a 500 or the address and key it called with."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from admin_util import Admin, admin, admin_for  # noqa: F401  (fixture)
from conftest import ProxyFactory

SEND = "/admin/ui/playground/send"
MESSAGE = {"family": "openai", "message": "are you there?"}
Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # answers nothing until the caller gives up and hangs up
    writer.close()


async def _drop_before_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                               ) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.transport.abort()


async def _drop_mid_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    event = b'data: {"choices":[{"delta":{"content":"half an ans"}}]}\n\n'
    writer.write(SSE_HEAD + b"%x\r\n" % len(event) + event + b"\r\n")
    await writer.drain()
    writer.transport.abort()


@pytest.fixture
async def own_api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[[Behaviour], Awaitable[None]]]:
    """Point the playground at a local server that misbehaves as told."""
    servers: list[asyncio.Server] = []

    async def point_at(behaviour: Behaviour) -> None:
        server = await asyncio.start_server(behaviour, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setattr("ds2proxy.admin.playground.own_base_url",
                            lambda request: f"http://127.0.0.1:{port}")

    yield point_at
    for server in servers:
        server.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_clean(admin: Admin, raw: bytes) -> None:
    text = raw.decode()
    assert "internal error" not in text and "127.0.0.1" not in text
    assert admin.proxy.key not in text and admin.token not in text


async def test_nothing_listening_is_a_502(admin: Admin, monkeypatch: pytest.MonkeyPatch):
    port = _closed_port()
    monkeypatch.setattr("ds2proxy.admin.playground.own_base_url",
                        lambda request: f"http://127.0.0.1:{port}")
    reply = await admin.call("POST", SEND, json=MESSAGE)
    assert reply.status == 502, reply.raw
    assert reply.json()["detail"] == "the playground could not connect to this server's API"
    _assert_clean(admin, reply.raw)


async def test_a_connection_dropped_before_the_answer_is_a_502(admin: Admin, own_api):
    await own_api(_drop_before_headers)
    reply = await admin.call("POST", SEND, json=MESSAGE)
    assert reply.status == 502, reply.raw
    assert reply.json()["detail"] == "the playground lost its connection to this server's API"
    _assert_clean(admin, reply.raw)


async def test_a_stream_cut_short_ends_with_an_error_event(admin: Admin, own_api):
    await own_api(_drop_mid_stream)
    reply = await admin.call("POST", SEND, json=MESSAGE)
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/event-stream")
    blocks = reply.raw.decode().strip().split("\n\n")
    assert "half an ans" in blocks[0]
    assert blocks[-1].startswith("event: error\ndata: ")
    error = json.loads(blocks[-1].partition("data: ")[2])["error"]
    assert error["code"] == "upstream_error" and "lost its connection" in error["message"]
    _assert_clean(admin, reply.raw)


async def test_no_answer_is_a_504(proxy_factory: ProxyFactory, own_api):
    proxy = await proxy_factory({"upstream": {"silence_timeout_seconds": 1}})
    await own_api(_hang)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        reply = await admin.call("POST", SEND, json=MESSAGE)
    assert reply.status == 504, reply.raw
    assert reply.json()["detail"] == "the playground's call to this server's API timed out"
    _assert_clean(admin, reply.raw)
