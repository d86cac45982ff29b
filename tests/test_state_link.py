"""The ``state`` settings and the Redis link: readiness, reconnection, and a
StateUnavailable (never a hang) while Redis is down."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest

from admin_util import admin_for

from ds2proxy.config import ConfigError, parse_config
from ds2proxy.state import redis_link
from ds2proxy.state.errors import StateUnavailable
from ds2proxy.state.redis_link import RedisLink
from ds2proxy.state.releases import Releases
from ds2proxy.state.settings import REDIS_URL_ENV, masked_url, parse_state
from ds2proxy.testing.redis_server import RedisServer


def test_embedded_is_the_default() -> None:
    state = parse_config({}).state
    assert state.backend == "embedded" and not state.shared
    assert state.key_prefix == "ds2proxy:" and state.lease_ttl_seconds == 30


def test_environment_url_wins_and_is_not_in_repr() -> None:
    data = {"state": {"backend": "redis", "redis_url": "redis://config-host:6379/0"}}
    state = parse_state(data, {REDIS_URL_ENV: "redis://:s3cret@env-host:6380/1"})
    assert state.redis_url == "redis://:s3cret@env-host:6380/1"
    assert "s3cret" not in repr(state)


@pytest.mark.parametrize("url, shown", [
    ("redis://:s3cret@host:6379/0", "redis://:…@host:6379/0"),
    ("redis://user:s3cret@host:6379/2", "redis://user:…@host:6379/2"),
    ("rediss://s3cret@host/0", "rediss://…@host/0"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://h:6379/0?db=1&password=s3cret", "redis://h:6379/0?db=1&password=…"),
    ("redis://u:s3cret@h/0?Password=s3cret#x", "redis://u:…@h/0?Password=…#x"),
    ("unix:///run/redis.sock?password=s3cret&db=2", "unix:///run/redis.sock?password=…&db=2"),
    ("redis://h/0?ssl_cert_reqs=none", "redis://h/0?ssl_cert_reqs=none"),
])
def test_masked_url_hides_the_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown


async def test_admin_config_read_hides_the_redis_password(proxy_factory) -> None:
    proxy = await proxy_factory({"state": {"redis_url": "redis://:s3cret-pw@127.0.0.1:1/0"}})
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        view = await admin.ok("GET", "/admin/config")
        assert view["state"]["redis_url"] == "redis://:…@127.0.0.1:1/0"
        assert b"s3cret-pw" not in (await admin.call("GET", "/admin/config")).raw


@pytest.mark.parametrize("section, field", [
    ({"backend": "memcached"}, "state.backend"),
    ({"redis_url": "http://localhost"}, "state.redis_url"),
    ({"redis_url": "redis://localhost/\u00b2"}, "state.redis_url"),  # passed isdigit()
    ({"redis_url": "redis://localhost/0?db=\u0663"}, "state.redis_url"),
    ({"lease_ttl_seconds": 1}, "state.lease_ttl_seconds"),
    ({"key_prefix": ""}, "state.key_prefix"),
])
def test_bad_values_name_the_field(section: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_state({"state": section}, {})
    assert caught.value.field == field


def test_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_link, "aioredis", None)
    with pytest.raises(redis_link.RedisMissing) as caught:
        RedisLink(parse_state({"state": {"backend": "redis"}}, {}))
    assert "pip install 'ds2proxy[redis]'" in str(caught.value)


def test_cli_reports_the_missing_extra(tmp_path) -> None:
    """The start-up error is one line naming the extra, not a traceback."""
    config = tmp_path / "config.json"
    config.write_text('{"keys": ["k"], "state": {"backend": "redis"}}')
    code = ("import sys; sys.modules['redis'] = None; sys.modules['redis.asyncio'] = None; "
            "from ds2proxy.cli import main; sys.exit(main(['--config', sys.argv[1], "
            "'--port', '0']))")
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install 'ds2proxy[redis]'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_link_follows_redis_down_and_up(redis_server: RedisServer) -> None:
    link = RedisLink(parse_state({"state": {"backend": "redis",
                                            "redis_url": redis_server.url}}, {}))
    came_back = asyncio.Event()
    link.on_up(came_back.set)
    await link.start()
    try:
        assert link.ready
        came_back.clear()
        assert await link.call(lambda: link.client.set(link.key("probe"), b"1")) is True
        await redis_server.astop()
        with pytest.raises(StateUnavailable) as caught:
            await link.call(lambda: link.client.get(link.key("probe")))
        assert caught.value.status == 503 and not link.ready
        with pytest.raises(StateUnavailable):  # known down: refused at once
            await link.call(lambda: link.client.get(link.key("probe")))
        await redis_server.astart()
        await asyncio.wait_for(came_back.wait(), 10)
        assert link.ready
        assert await link.call(lambda: link.client.ping())
    finally:
        await link.close()


async def test_unreachable_at_start_is_not_fatal() -> None:
    server = RedisServer()  # a free port nobody listens on yet
    link = RedisLink(parse_state({"state": {"backend": "redis", "redis_url": server.url}}, {}))
    await link.start()
    try:
        assert not link.ready
        with pytest.raises(StateUnavailable):
            await link.call(lambda: link.client.ping())
        await server.astart()
        ready = asyncio.Event()
        link.on_up(ready.set)
        await asyncio.wait_for(ready.wait(), 10)
        assert link.ready
    finally:
        await link.close()
        server.close()


async def test_a_frozen_redis_costs_a_deadline_not_the_loop(redis_server: RedisServer,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """A Redis that accepts but never answers: the call fails after its
    deadline, and the event loop keeps running meanwhile."""
    monkeypatch.setattr(redis_link, "CALL_TIMEOUT", 0.3)
    link = RedisLink(parse_state({"state": {"backend": "redis",
                                            "redis_url": redis_server.url}}, {}))
    await link.start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    running = asyncio.create_task(ticker())
    try:
        redis_server.pause()
        with pytest.raises(StateUnavailable):
            await link.call(lambda: link.client.get(link.key("probe")))
        assert ticks >= 5  # the loop went on while the call waited
        assert not link.ready
        redis_server.resume()
        came_back = asyncio.Event()
        link.on_up(came_back.set)
        await asyncio.wait_for(came_back.wait(), 10)
    finally:
        redis_server.resume()
        running.cancel()
        await link.close()


async def test_releases_go_out_together_and_survive_an_outage(redis_server: RedisServer
                                                              ) -> None:
    """A burst of releases is one call; those Redis could not take are kept
    and sent when it answers again."""
    link = RedisLink(parse_state({"state": {"backend": "redis",
                                            "redis_url": redis_server.url}}, {}))
    await link.start()
    held = link.key("held")
    batches: list[list[str]] = []

    async def send(batch: dict[str, str]) -> list[int]:
        batches.append(list(batch))
        return [await link.client.srem(key, ident) for ident, key in batch.items()]

    releases: Releases[str] = Releases(link, send, what="test releases")
    link.on_up(releases.replay)
    try:
        await link.call(lambda: link.client.sadd(held, *"abcde"))
        for ident in "abc":
            releases.add(ident, held)
        await releases.settle()
        assert batches == [["a", "b", "c"]] and not releases.kept
        await redis_server.astop()
        releases.add("d", held)
        await releases.settle()
        assert list(releases.kept) == ["d"]
        await redis_server.astart()  # empty: nothing left to remove, but sent all the same
        async with asyncio.timeout(10):
            while releases.kept:
                await asyncio.sleep(0.02)
        assert batches[-1] == ["d"]
    finally:
        await link.close()
