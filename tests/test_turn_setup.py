"""A turn's setup overlaps the independent upstream calls: the chat session
and the PoW challenge are asked for at once, and when both find the token
refused they share one re-login."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from conftest import ACCOUNTS, Proxy, running_fake

from ds2proxy.testing import FakeDeepSeek

CHAT = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}


class Rendezvous(FakeDeepSeek):
    """Answers a session creation only once a PoW challenge was asked for as
    well, and the other way round: a client asking one after the other never
    gets its first answer (and fails after a few seconds)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.session_asked = asyncio.Event()
        self.challenge_asked = asyncio.Event()

    async def create_session(self, request: web.Request) -> web.Response:
        self.session_asked.set()
        await asyncio.wait_for(self.challenge_asked.wait(), 5)
        return await super().create_session(request)

    async def create_pow_challenge(self, request: web.Request) -> web.Response:
        self.challenge_asked.set()
        await asyncio.wait_for(self.session_asked.wait(), 5)
        return await super().create_pow_challenge(request)


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeDeepSeek]:
    async for fake in running_fake(Rendezvous):
        yield fake


async def chat(proxy: Proxy) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", json=CHAT,
                             headers=proxy.headers()) as resp:
            return resp.status, await resp.json()


async def test_session_and_challenge_are_asked_for_at_once(proxy: Proxy) -> None:
    status, reply = await chat(proxy)
    assert status == 200, reply
    assert "You said: hi" in reply["choices"][0]["message"]["content"]
    assert proxy.fake.session_asked.is_set() and proxy.fake.challenge_asked.is_set()


async def test_both_calls_refused_share_one_relogin(proxy_factory) -> None:
    proxy = await proxy_factory({"accounts": [{"email": ACCOUNTS[0][0],
                                               "password": ACCOUNTS[0][1]}]})
    assert (await chat(proxy))[0] == 200
    proxy.fake.revoke_tokens()
    before = len(proxy.fake.calls)
    status, reply = await chat(proxy)
    assert status == 200, reply
    logins = proxy.fake.calls_to("users/login")
    assert len(logins) == 2  # the first turn's, and one for the refused token
    refused = [c for c in proxy.fake.calls[before:]
               if c.endpoint in ("chat_session/create", "chat/create_pow_challenge")]
    assert len(refused) == 4  # each asked twice: refused, then with the new token
