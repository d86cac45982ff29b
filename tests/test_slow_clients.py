"""Slow and idle clients are timed out, and the number of open connections
is capped (``server.*``): raw sockets against the real server, each test
waiting for the server to close the connection."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from conftest import Proxy, ProxyFactory
from ds2proxy.connections import GUARD
from ds2proxy.testing import Delivery, Scripted

QUICK = {"header_timeout_seconds": 0.3, "body_timeout_seconds": 0.3,
         "keepalive_timeout_seconds": 0.3}
CLOSE_WAIT = 15  # generous bound on waiting for the close; the timeouts are 0.3 s


async def connect(proxy: Proxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(proxy.url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), CLOSE_WAIT):
            received += chunk
    except ConnectionResetError:
        pass
    return received


@pytest.fixture
async def quick(proxy_factory: ProxyFactory) -> Proxy:
    return await proxy_factory({"server": QUICK})


async def test_a_connection_that_sends_nothing_is_closed(quick):
    reader, writer = await connect(quick)
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_partial_request_head_is_closed(quick):
    reader, writer = await connect(quick)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await writer.drain()
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_head_trickled_byte_by_byte_is_closed(quick):
    reader, writer = await connect(quick)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 4000

    async def trickle() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.02)

    sender = asyncio.create_task(trickle())
    try:
        assert await closed_by_server(reader) == b""
    finally:
        sender.cancel()
        writer.close()


async def test_a_partial_request_body_is_closed_and_the_lease_is_untouched(quick):
    reader, writer = await connect(quick)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer " + quick.key.encode() + b"\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                 b'{"model": "deepseek-chat", "messages": [')
    await writer.drain()
    assert await closed_by_server(reader) == b""
    writer.close()
    assert quick.core.pool.inflight == 0


async def test_an_idle_keep_alive_connection_is_closed(quick):
    reader, writer = await connect(quick)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    received = await closed_by_server(reader)
    assert received.startswith(b"HTTP/1.1 200")
    assert b'{"status": "ok"}' in received
    writer.close()


async def test_connections_over_the_cap_get_a_503(proxy_factory):
    proxy = await proxy_factory({"server": {"max_connections": 3,
                                            "header_timeout_seconds": 30}})
    held = [await connect(proxy) for _ in range(3)]
    guard = proxy.app[GUARD]
    for _ in range(500):  # the server sees the three (bounded wait)
        if guard.open_connections == 3:
            break
        await asyncio.sleep(0.01)
    assert guard.open_connections == 3
    reader, writer = await connect(proxy)
    refused = await closed_by_server(reader)
    assert refused.startswith(b"HTTP/1.1 503")
    assert b"Retry-After: 1" in refused
    writer.close()
    # One held connection goes: a new one is served again.
    held[0][1].close()
    for _ in range(500):
        if guard.open_connections < 3:
            break
        await asyncio.sleep(0.01)
    reader, writer = await connect(proxy)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 200")
    writer.close()
    for _, w in held[1:]:
        w.close()


async def test_a_streaming_answer_outlives_the_client_timeouts(quick):
    # The timeouts bound what the client sends, not how long an answer takes.
    quick.fake.enqueue(Scripted(answer="slow but steady", chunk_size=2,
                                delivery=Delivery(chunk_delay=0.1)))
    reader, writer = await connect(quick)
    body = (b'{"model": "deepseek-chat", "stream": true, '
            b'"messages": [{"role": "user", "content": "hi"}]}')
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Authorization: Bearer " + quick.key.encode() + b"\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    received = await closed_by_server(reader)
    writer.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert b"data: [DONE]" in received


async def test_three_hundred_slow_clients_are_all_closed(quick):
    # The campaign's case: half stop inside the head, half inside the body.
    async def slow_client(n: int) -> bytes:
        reader, writer = await connect(quick)
        if n % 2:
            writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        else:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer " + quick.key.encode() + b"\r\n"
                         b"Content-Length: 5000\r\n\r\n{")
        await writer.drain()
        try:
            return await closed_by_server(reader)
        finally:
            writer.close()

    received = await asyncio.gather(*(slow_client(n) for n in range(300)))
    assert received == [b""] * 300
    assert quick.app[GUARD].open_connections == 0
    assert quick.core.pool.inflight == 0
