"""The playground and the self-test call this server's own API with an API
key: the address they call is the socket the request came in on, never the
client's Host header (a forged Host would carry the key to another machine)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from admin_util import Admin, admin  # noqa: F401  (fixture)
from conftest import Proxy
from ds2proxy.admin.probes import own_base_url
from ds2proxy.errors import ProxyError

class Bait:
    """A server a forged Host points at: it records whatever reaches it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _record(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        return web.json_response({"stolen": True})


@pytest.fixture
async def bait() -> AsyncIterator[Bait]:
    trap = Bait()
    await trap.start()
    yield trap
    assert trap.runner is not None
    await trap.runner.cleanup()


async def _post(proxy: Proxy, path: str, body: dict, host: str, token: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + path, json=body, headers={
                "Host": host, "Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.text()


async def test_a_forged_host_does_not_steer_the_playground(admin: Admin, bait: Bait):
    status, text = await _post(admin.proxy, "/admin/ui/playground/send",
                               {"family": "openai", "message": "where am I?"},
                               f"127.0.0.1:{bait.port}", admin.token)
    assert status == 200, text[:300]
    assert "chat.completion.chunk" in text and "stolen" not in text
    assert bait.seen == []


async def test_a_forged_host_does_not_steer_the_self_test(admin: Admin, bait: Bait):
    status, text = await _post(admin.proxy, "/admin/test", {"message": "ping"},
                               f"127.0.0.1:{bait.port}", admin.token)
    assert status == 200, text[:300]
    assert '"success":true' in text.replace(" ", "") and "stolen" not in text
    assert bait.seen == []


def test_a_closed_connection_is_refused_not_read_from_host():
    """The socket is gone (the client hung up while the body was read or
    parsed): the Host header is the only address left, and it is not used."""
    request = make_mocked_request("POST", "/admin/ui/playground/send",
                                  headers={"Host": "attacker.example:80"})
    request.protocol.transport = None  # what aiohttp does when the connection is lost
    assert request.transport is None
    with pytest.raises(ProxyError) as caught:
        own_base_url(request)
    assert caught.value.status == 400 and "attacker" not in caught.value.message


def test_the_address_is_the_socket_the_request_came_in_on():
    class Transport:
        def get_extra_info(self, name: str) -> object:
            return {"sockname": ("::1", 8123, 0, 0)}.get(name)

    request = make_mocked_request("POST", "/admin/test", headers={"Host": "evil.example"},
                                  transport=Transport())
    assert own_base_url(request) == "http://[::1]:8123"
