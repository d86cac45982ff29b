"""The shared raw client: what it sends for each body type, and the one
reply shape every test reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ds2proxy.app import RunningServer, start_server
from ds2proxy.testing.clients import post, request


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "type": request.content_type,
                              "body": body.decode(), "auth": request.headers.get("X-Key")},
                             headers={"X-Seen": str(len(body))})


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    running = await start_server(app)
    yield running
    await running.close()


@pytest.mark.parametrize(("body", "sent"), [
    ({"a": 1}, '{"a": 1}'),
    ([1, 2], "[1, 2]"),
    ('{"raw": true}', '{"raw": true}'),
    (b"\x7bbytes\x7d", "{bytes}"),
])
async def test_bodies_go_as_json_unless_told_otherwise(server, body, sent):
    answer = await post(server.url + "/echo", body, {"X-Key": "k"})
    assert answer.status == 200
    assert answer.json() == {"method": "POST", "type": "application/json", "body": sent,
                             "auth": "k"}
    assert answer.headers["x-seen"] == str(len(sent.encode()))  # case-insensitive
    assert answer.text == answer.body.decode()


async def test_an_explicit_content_type_and_no_body(server):
    answer = await post(server.url + "/echo", "a=1", {"Content-Type": "text/plain"})
    assert answer.json()["type"] == "text/plain"
    got = await request("GET", server.url + "/echo")
    assert got.json() == {"method": "GET", "type": "application/octet-stream", "body": "",
                          "auth": None}
