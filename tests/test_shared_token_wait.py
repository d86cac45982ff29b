"""Waiting for another instance's login: the shared token's announcement
ends the wait however it falls against the waiter's own look."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from conftest import base_config
from test_state_redis_edges import subscribed

from ds2proxy.config_store import ConfigStore
from ds2proxy.core import Core
from ds2proxy.state.tokens import SharedTokens
from ds2proxy.testing import FakeDeepSeek
from ds2proxy.upstream import credentials
from ds2proxy.upstream.client import DeepSeekClient
from ds2proxy.upstream.credentials import TokenKeeper


async def test_a_token_announced_between_the_look_and_the_wait_ends_the_wait(
        open_link, fake_upstream: FakeDeepSeek, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wait made its event after the look: a token another instance
    announced in between was missed, and the waiter slept a whole recheck
    period (0.5 s; here an hour, so only the announcement can end it)."""
    monkeypatch.setattr(credentials, "LOGIN_RECHECK_SECONDS", 3600.0)
    holder, waiter = SharedTokens(await open_link()), SharedTokens(await open_link())
    heard = asyncio.Event()  # after the waiter's own handler has run
    waiter.link.subscribe(waiter.channel, lambda account: heard.set())
    await subscribed(holder.link, holder.channel, 2)
    core = Core(ConfigStore(base_config(fake_upstream)))
    state = next(iter(core.pool.accounts()))
    account = state.identifier
    assert await holder.lock(account, 60)  # the other instance is logging in
    real_lock = waiter.lock

    async def lock_then_announce(name: str, ttl: float) -> bool:
        got = await real_lock(name, ttl)  # refused: the holder has it
        await holder.put(name, "tok-from-the-other-instance")
        await heard.wait()  # announced after the waiter looked, before it waits
        return got

    monkeypatch.setattr(waiter, "lock", lock_then_announce)
    async with aiohttp.ClientSession() as http:
        client = DeepSeekClient(http, core.config.upstream)
        keeper = TokenKeeper(client, core.store, core.pool.health, waiter)
        token = await asyncio.wait_for(keeper.refresh(state, stale_token=""), 30)
    assert token == "tok-from-the-other-instance" and state.token == token
    assert fake_upstream.calls_to("users/login") == []
    await holder.unlock(account)


async def test_a_wait_with_no_announcement_ends_at_its_timeout(open_link) -> None:
    tokens = SharedTokens(await open_link())
    armed = tokens.armed("nobody@example.com")
    await tokens.wait("nobody@example.com", 0.0, armed)
    assert not armed.is_set()
