"""``upstream.session_cleanup``: the web-chat sessions turns open are deleted
once the turn is over (``single``) or kept (``none``, the default), on every
path — non-stream, stream, client disconnect, fail-over — without holding
the lease or the answer back."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from admin_util import Admin, admin, wait_until  # noqa: F401  (fixture)
from conftest import ProxyFactory

from ds2proxy.config import ConfigError, parse_config
from ds2proxy.errors import UpstreamError
from ds2proxy.testing import Delivery, HttpFault, Scripted
from ds2proxy.upstream import cleanup
from ds2proxy.upstream.cleanup import SessionJanitor
from ds2proxy.testing.clients import openai_client

SINGLE = {"upstream": {"session_cleanup": "single"}}
HELLO = [{"role": "user", "content": "hello"}]


def opened_sessions(proxy) -> list[tuple[str | None, str]]:
    """(account, session id) of every completion the fake received."""
    return [(c.account, c.body["chat_session_id"])
            for c in proxy.fake.calls_to("chat/completion")]


def deleted_sessions(proxy) -> list[tuple[str | None, str]]:
    return [(c.account, c.body["chat_session_id"])
            for c in proxy.fake.calls_to("chat_session/delete")]


async def test_sessions_are_kept_by_default(proxy):
    await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=HELLO)
    await proxy.core.janitor.idle()
    [(_, session_id)] = opened_sessions(proxy)
    assert session_id in proxy.fake.sessions
    assert deleted_sessions(proxy) == []


async def test_single_deletes_the_session_of_a_non_stream_turn(proxy_factory: ProxyFactory):
    proxy = await proxy_factory(SINGLE)
    sdk = openai_client(proxy)
    reply = await sdk.chat.completions.create(model="deepseek-chat", messages=HELLO)
    assert reply.choices[0].message.content
    await proxy.core.janitor.idle()
    opened = opened_sessions(proxy)
    assert deleted_sessions(proxy) == opened
    assert all(session_id not in proxy.fake.sessions for _, session_id in opened)
    assert proxy.core.janitor.deleted == 1 and proxy.core.pool.inflight == 0


async def test_single_deletes_the_session_of_a_stream_turn(proxy_factory: ProxyFactory):
    proxy = await proxy_factory(SINGLE)
    sdk = openai_client(proxy)
    stream = await sdk.chat.completions.create(model="deepseek-chat", messages=HELLO,
                                               stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text
    await proxy.core.janitor.idle()
    assert deleted_sessions(proxy) == opened_sessions(proxy) != []


async def test_a_client_that_disconnects_mid_stream_still_gets_its_session_deleted(
        proxy_factory: ProxyFactory):
    proxy = await proxy_factory(SINGLE)
    proxy.fake.enqueue(Scripted(answer="word " * 400, delivery=Delivery(chunk_delay=0.01)))
    body = {"model": "deepseek-chat", "messages": HELLO, "stream": True}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.url}/v1/chat/completions", json=body,
                             headers=proxy.headers()) as resp:
            assert resp.status == 200
            await resp.content.readline()
    # The server notices the disconnect at its next write, then closes the turn.
    await wait_until(lambda: proxy.core.pool.inflight == 0 and bool(deleted_sessions(proxy)))
    assert deleted_sessions(proxy) == opened_sessions(proxy)


async def test_a_fail_over_deletes_the_sessions_on_both_accounts(proxy_factory: ProxyFactory):
    proxy = await proxy_factory(SINGLE)
    proxy.fake.enqueue(HttpFault(502), Scripted(answer="from the other account"))
    sdk = openai_client(proxy)
    reply = await sdk.chat.completions.create(model="deepseek-chat", messages=HELLO)
    assert reply.choices[0].message.content == "from the other account"
    await proxy.core.janitor.idle()
    opened = opened_sessions(proxy)
    assert len({account for account, _ in opened}) == 2
    assert sorted(deleted_sessions(proxy)) == sorted(opened)


async def test_a_failed_delete_is_logged_and_the_answer_is_unaffected(
        proxy_factory: ProxyFactory, caplog: pytest.LogCaptureFixture):
    proxy = await proxy_factory(SINGLE)
    proxy.fake.delete_error = (40003, "SESSION_NOT_FOUND")
    caplog.set_level(logging.WARNING, logger="ds2proxy.upstream")
    sdk = openai_client(proxy)
    reply = await sdk.chat.completions.create(model="deepseek-chat", messages=HELLO)
    assert reply.choices[0].message.content
    await proxy.core.janitor.idle()
    [(_, session_id)] = opened_sessions(proxy)
    assert proxy.core.janitor.failed == 1 and proxy.core.janitor.deleted == 0
    assert session_id in proxy.fake.sessions
    assert any("could not delete chat session" in r.getMessage() for r in caplog.records)
    token = next(iter(proxy.store.config.accounts)).token
    assert token and all(token not in r.getMessage() for r in caplog.records)


async def test_setting_is_hot_reloaded_from_the_admin_api(admin: Admin):  # noqa: F811
    proxy = admin.proxy
    view = await admin.ok("GET", "/admin/settings")
    assert view["upstream"]["session_cleanup"] == "none"
    await admin.ok("PUT", "/admin/settings", json={"upstream": {"session_cleanup": "single"}})
    await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=HELLO)
    await proxy.core.janitor.idle()
    assert deleted_sessions(proxy) == opened_sessions(proxy) != []
    reply = await admin.call("PUT", "/admin/settings",
                             json={"upstream": {"session_cleanup": "all"}})
    assert reply.status == 400 and b"upstream.session_cleanup" in reply.raw


def test_config_validation_names_the_field():
    assert parse_config({}).upstream.session_cleanup == "none"
    with pytest.raises(ConfigError) as info:
        parse_config({"upstream": {"session_cleanup": "everything"}})
    assert "upstream.session_cleanup" in str(info.value)


class BlockingClient:
    """A client whose deletes wait until released (or cancelled)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = 0

    async def delete_session(self, token: str, session_id: str) -> None:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if session_id == "bad":
            raise UpstreamError("delete failed")


async def test_janitor_drains_at_close_and_cancels_what_is_late(monkeypatch):
    fake = BlockingClient()
    janitor = SessionJanitor(fake)  # type: ignore[arg-type]
    janitor.schedule("token", ["a", "a", "", "bad"])
    assert janitor.pending == 2  # duplicates and blanks dropped
    await fake.started.wait()
    monkeypatch.setattr(cleanup, "DRAIN_SECONDS", 0.05)
    await janitor.close()
    assert janitor.pending == 0 and fake.cancelled == 2
    assert janitor.deleted == janitor.failed == 0


async def test_janitor_counts_successes_and_failures():
    fake = BlockingClient()
    janitor = SessionJanitor(fake)  # type: ignore[arg-type]
    janitor.schedule("token", ["ok", "bad"])
    fake.release.set()
    await janitor.idle()
    assert (janitor.deleted, janitor.failed, janitor.pending) == (1, 1, 0)
