"""Edges of state on a real Redis: two deployments on one server, the
password in the URL, instances whose clocks disagree, Redis restarting or
not answering, and counts two instances make at once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from admin_util import admin_for, login
from conftest import shared_config
from test_account_health import Clock, settings
from test_state_instances import AdminClient, ask, within

from ds2proxy.admin.credentials import AdminCredentials
from ds2proxy.config_store import ConfigStore
from ds2proxy.config_values import ConfigError
from ds2proxy.errors import AuthenticationFailed
from ds2proxy.health import HealthTracker
from ds2proxy.health.tracker import NAMESPACE as HEALTH
from ds2proxy.keyring import identity_of
from ds2proxy.request_record import RequestRecord
from ds2proxy.state import redis_link, redis_usage
from ds2proxy.state import tokens as tokens_module
from ds2proxy.state.counters import DAY
from ds2proxy.state.leases import RedisLeases
from ds2proxy.state.redis_limits import RedisCounters, RedisPaceGate
from ds2proxy.state.redis_link import RedisLink
from ds2proxy.state.redis_records import RedisRecords
from ds2proxy.state.redis_usage import SCAN, RedisUsage
from ds2proxy.state.responses import RedisResponses
from ds2proxy.state.settings import parse_state
from ds2proxy.state.shared_config import ConfigSync, SharedDocument
from ds2proxy.state.tokens import SharedTokens
from ds2proxy.state.usage import FILTERS
from ds2proxy.testing import FakeDeepSeek
from ds2proxy.testing.redis_server import RedisServer


async def subscribed(link: RedisLink, channel: str, count: int = 1) -> None:
    """Until ``channel`` has ``count`` subscribers (the links' listeners are in place)."""
    async with asyncio.timeout(5):
        while (await link.client.pubsub_numsub(channel))[0][1] < count:
            await asyncio.sleep(0.02)


async def test_deployments_in_two_databases_do_not_hear_each_other(open_link) -> None:
    """Pub/sub ignores the database number: a change notice of the deployment
    in db 0 must not reach the one in db 1 (same key prefix)."""
    other, watcher, peer = await open_link(db=0), await open_link(db=1), await open_link(db=1)
    heard: asyncio.Queue[str] = asyncio.Queue()
    RedisRecords(watcher).watch("account_health", lambda key, value: heard.put_nowait(key))
    theirs, ours = RedisRecords(other), RedisRecords(peer)
    await subscribed(watcher, watcher.channel("records", "account_health"))
    theirs.put("account_health", "u0@example.com", {"state": "disabled"})
    await theirs.flush()
    ours.put("account_health", "u1@example.com", {"state": "cooling_down"})
    await ours.flush()
    # Messages reach a subscriber in the order Redis took them: the db 0 notice,
    # had it been heard, would come first.
    assert await asyncio.wait_for(heard.get(), 5) == "u1@example.com"
    assert heard.empty()
    assert await RedisRecords(watcher).load("account_health") == {
        "u1@example.com": {"state": "cooling_down"}}


REDIS_PASSWORD = "redis-query-pass-7e6d5c"


@pytest.mark.parametrize("url", [
    f"redis://127.0.0.1:{{port}}/0?password={REDIS_PASSWORD}",
    f"redis://:{REDIS_PASSWORD}@127.0.0.1:{{port}}/0",
    f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{{port}}/0?decode_responses=0",
])
async def test_a_password_given_in_the_url_is_used_and_never_logged(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The client takes the password from the user part or from a
    ``password=`` query parameter; neither reaches the log."""
    caplog.set_level(logging.INFO, logger="ds2proxy.state")
    with RedisServer(password=REDIS_PASSWORD) as server:
        for given in (url, url.replace(REDIS_PASSWORD, "wrong-" + REDIS_PASSWORD)):
            link = RedisLink(parse_state({"state": {"backend": "redis", "redis_url": given.format(
                port=server.port)}}, {}))
            await link.start()
            try:
                assert link.ready == (given == url)
            finally:
                await link.close()
    assert "is reachable" in caplog.text and "is unreachable" in caplog.text
    assert REDIS_PASSWORD not in caplog.text


async def test_a_refused_password_is_named_in_the_log_not_shown(
        caplog: pytest.LogCaptureFixture) -> None:
    """A wrong password is not an unreachable server: the log says the
    password was refused (and shows neither password)."""
    caplog.set_level(logging.INFO, logger="ds2proxy.state")
    wrong = "wrong-" + REDIS_PASSWORD
    with RedisServer(password=REDIS_PASSWORD) as server:
        link = RedisLink(parse_state({"state": {"backend": "redis", "redis_url":
                                                f"redis://:{wrong}@127.0.0.1:{server.port}/0"}},
                                     {}))
        await link.start()
        await link.close()
    assert not link.ready
    assert "AuthenticationError: invalid username-password pair" in caplog.text
    assert wrong not in caplog.text and REDIS_PASSWORD not in caplog.text


async def test_a_refused_command_is_logged_without_its_arguments(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """An ACL user without channel access: Redis refuses the notice of a
    record write, and the log names the refusal but not the record (a
    pipeline's error quotes every argument of the failed command)."""
    caplog.set_level(logging.INFO, logger="ds2proxy.state")
    admin = aioredis.from_url(redis_server.url)
    await admin.execute_command("ACL", "SETUSER", "nochan", "on", f">{REDIS_PASSWORD}",
                                "~ds2proxy:*", "resetchannels", "+@all")
    await admin.aclose()
    url = f"redis://nochan:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}/0"
    link = RedisLink(parse_state({"state": {"backend": "redis", "redis_url": url}}, {}))
    await link.start()
    try:
        records = RedisRecords(link)
        records.put("admin_logouts", "jti-s3cr3t", {"exp": 1})
        async with asyncio.timeout(5):
            while "state records wait to be written" not in caplog.text:
                await asyncio.sleep(0.02)
    finally:
        await link.close()
    assert "no permissions" in caplog.text
    assert "jti-s3cr3t" not in caplog.text and REDIS_PASSWORD not in caplog.text


async def test_admin_reads_mask_a_query_password_and_a_read_sent_back_keeps_it(
        proxy_factory) -> None:
    url = f"unix:///run/redis.sock?db=2&password={REDIS_PASSWORD}"
    proxy = await proxy_factory({"state": {"redis_url": url}})
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        view = await admin.ok("GET", "/admin/config")
        assert view["state"]["redis_url"] == "unix:///run/redis.sock?db=2&password=…"
        assert REDIS_PASSWORD.encode() not in (await admin.call("GET", "/admin/config")).raw
        await admin.ok("POST", "/admin/config/import?mode=merge", json=view)
        assert proxy.store.snapshot()["state"]["redis_url"] == url


SKEWS = {"a day ahead": lambda now: DAY, "a day behind": lambda now: -DAY,
         "just before midnight": lambda now: -(now % DAY) - 1}


@pytest.mark.parametrize("skew", SKEWS)
async def test_a_keys_tokens_of_instances_with_skewed_clocks_add_up(
        open_link, monkeypatch: pytest.MonkeyPatch, skew: str) -> None:
    """The UTC day of a key's token counter is Redis's: an instance whose
    clock is off (here across midnight) adds to the same day's total as the
    others, and reads it."""
    right, wrong = RedisCounters(await open_link()), RedisCounters(await open_link())
    await right.add_tokens("k", 7)
    real = time.time
    with monkeypatch.context() as clock:
        offset = SKEWS[skew](real())
        clock.setattr(time, "time", lambda: real() + offset)
        assert await wrong.add_tokens("k", 5) == 12
        assert await wrong.tokens("k") == 12
    assert await right.tokens("k") == 12


async def test_a_config_change_after_redis_restarted_empty_reaches_the_other_instance(
        redis_server: RedisServer, open_link) -> None:
    """Redis restarted without its data: the shared config's versions start
    again from 1, below the ones the instances applied; a change made then
    on one instance still reaches the other."""
    stores = [ConfigStore({"keys": ["k0"]}), ConfigStore({"keys": ["k0"]})]
    syncs = []
    for store in stores:
        sync = ConfigSync(store, SharedDocument(await open_link()))
        store.shared = sync.doc
        sync.start()
        await sync.join()
        syncs.append(sync)
    one, two = stores
    try:
        for name in ("a", "b", "c"):
            await one.update(lambda data, n=name: data["keys"].append({"name": n, "key": n * 9}))
        await until(lambda: two.version == 4 and len(two.config.keys) == 4)
        await redis_server.astop()
        await redis_server.astart()
        await until(lambda: all(sync.doc.link.ready for sync in syncs))
        await one.update(lambda data: data["keys"].append({"name": "after", "key": "d" * 9}))
        await until(lambda: "after" in {k.name for k in two.config.keys})
        assert one.snapshot() == two.snapshot()
        await two.update(lambda data: data["keys"].append({"name": "then", "key": "e" * 9}))
        await until(lambda: "then" in {k.name for k in one.config.keys})
    finally:
        for sync in syncs:
            await sync.close()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_a_logout_made_while_an_instance_could_not_hear_it_still_revokes_there(
        redis_server: RedisServer, open_link) -> None:
    """An instance that starts while Redis does not answer loads no logouts
    and hears no notices; once Redis answers it must know every session
    logged out meanwhile, not accept them until they expire."""
    doc = {"admin": {"jwt_secret": "s" * 48}}
    on_one = AdminCredentials(ConfigStore(doc), None, records=RedisRecords(await open_link()))
    token, _ = on_one.issue(1)
    on_one.log_out(on_one.decode(token))
    await on_one.records.flush()
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    late = RedisLink(parse_state({"state": {"backend": "redis", "redis_url": url}}, {}))
    on_two = AdminCredentials(ConfigStore(doc), None, records=RedisRecords(late))
    redis_server.pause()
    try:
        await late.start()
        await on_two.load_logouts()  # what the admin app does at start: Redis is away
        assert not late.ready and on_two.decode(token)
        redis_server.resume()
        await until(lambda: late.ready)
        await until(lambda: revoked(on_two, token))
    finally:
        redis_server.resume()
        await late.close()


async def test_a_logout_survives_redis_losing_its_data(open_link) -> None:
    """Log out on A, then Redis loses its data (FLUSHALL): the session stays
    refused on A and B, and on an instance started after the loss (it loads
    nothing, and its read is what finds the loss: A puts the logout back)."""
    doc = {"admin": {"jwt_secret": "s" * 48}}
    on_a = AdminCredentials(ConfigStore(doc), None, records=RedisRecords(await open_link()))
    on_b = AdminCredentials(ConfigStore(doc), None, records=RedisRecords(await open_link()))
    await on_a.load_logouts()
    await on_b.load_logouts()
    token, _ = on_a.issue(1)
    kept, _ = on_a.issue(1)
    on_a.log_out(on_a.decode(token))
    await on_a.records.flush()
    await until(lambda: revoked(on_b, token))
    link = on_a.records.link
    await link.client.flushall()
    late = AdminCredentials(ConfigStore(doc), None, records=RedisRecords(await open_link()))
    await late.load_logouts()
    await until(lambda: revoked(late, token))
    assert revoked(on_a, token) and revoked(on_b, token)
    assert await link.client.hexists(link.key("records", "admin_logouts"),
                                     on_a.decode(kept).jti) == 0
    assert all(creds.decode(kept) for creds in (on_a, on_b, late))
    for creds in (on_a, on_b, late):
        await creds.records.close()


def revoked(creds: AdminCredentials, token: str) -> bool:
    try:
        creds.decode(token)
    except AuthenticationFailed:
        return True
    return False


@pytest.mark.parametrize("skew", [-1000.0, 1000.0])
async def test_a_stored_response_lives_its_ttl_whatever_the_instances_clocks(
        open_link, monkeypatch: pytest.MonkeyPatch, skew: float) -> None:
    """A response stored by an instance whose clock is off by more than the
    TTL is still readable on the others, and a shortened TTL still hides it."""
    ttl = [900.0]
    wrong = RedisResponses(await open_link(), lambda: ttl[0])
    right = RedisResponses(await open_link(), lambda: ttl[0])
    real = time.time
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: real() + skew)
        await wrong.keep("alice", {"id": "resp_skew", "output": []}, [])
    entry = await right.fetch("alice", "resp_skew")
    assert entry is not None and entry.response["id"] == "resp_skew"
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: real() - skew)
        assert await right.fetch("alice", "resp_skew") is not None
    ttl[0] = 0.0
    assert await right.fetch("alice", "resp_skew") is None


async def test_requests_today_counted_on_two_instances_add_up_and_roll_over(
        open_link) -> None:
    """Two instances granting the same account at once: its "requests today"
    is the sum, on both, in Redis and for an instance started later; at the
    UTC day boundary the new day's count replaces the old one everywhere."""
    clock = Clock(86400 * 20000 + 86000)  # 400 s before a UTC midnight
    pairs = []
    for _ in range(2):
        records = RedisRecords(await open_link())
        tracker = HealthTracker(settings(), records, clock=clock)
        records.watch(HEALTH, tracker.adopt)
        pairs.append((tracker, records))
    await subscribed(pairs[0][1].link, pairs[0][1].link.channel("records", HEALTH), 2)
    (one, on_one), (two, on_two) = pairs

    async def settled() -> None:
        for records in (on_one, on_two):
            await records.flush()

    for _ in range(10):
        one.granted("x")
        two.granted("x")
        await asyncio.sleep(0)
    await settled()
    await until(lambda: one.view("x")["requests_today"] == two.view("x")["requests_today"] == 20)
    await settled()
    later = HealthTracker(settings(), None, clock=clock)
    later.load(await on_one.load(HEALTH))
    assert later.view("x")["requests_today"] == 20
    clock.now += 600  # the next UTC day
    two.granted("x")
    await settled()
    await until(lambda: one.view("x")["requests_today"] == 1)
    one.granted("x")
    await settled()
    await until(lambda: two.view("x")["requests_today"] == 2)


async def test_a_keys_tokens_today_read_on_any_instance_are_the_clusters(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances) -> None:
    """The keys API on an instance that served none of a key's requests
    shows the tokens the other instance counted, not 0."""
    group = await instances(shared_config(fake_upstream, redis_server, {
        "keys": [{"name": "q", "key": "sk-q", "limits": {"tokens_per_day": 100000}}]}), 2)
    a, b = group.running
    for _ in range(3):
        assert await ask(a, "sk-q")
    async with aiohttp.ClientSession() as http:
        on_a, on_b = AdminClient(http, a), AdminClient(http, b)
        await on_a.login(group.admin_key)
        await on_b.login(group.admin_key)

        async def used(admin: AdminClient) -> int:
            status, body = await admin.call("GET", "/admin/keys")
            assert status == 200, body
            return next(k for k in body["keys"] if k["name"] == "q")["usage"][
                "tokens_per_day"]["used"]

        counted = 0

        async def both_agree() -> bool:
            nonlocal counted
            counted = await used(on_a)
            return counted > 0 and await used(on_b) == counted

        await within(5, both_agree)
        cluster = aioredis.from_url(redis_server.url)
        try:
            day = int((await cluster.time())[0] // 86400)
            assert int(await cluster.get(f"ds2proxy:tokens:{day}:{identity_of('sk-q')}")) == counted
        finally:
            await cluster.aclose()


async def test_two_deployments_with_their_own_key_prefix_share_nothing(open_link) -> None:
    """Every key and limit of one deployment on a shared Redis is under its
    prefix: the other's limits, totals, records, config and usage start empty."""
    blue, green = await open_link(prefix="blue:"), await open_link(prefix="green:")
    for link in (blue, green):
        counters = RedisCounters(link)
        assert await counters.hit("k", 1) == 0 and await counters.hit("k", 1) > 0
        assert await counters.take_slot("k", 1) and not await counters.take_slot("k", 1)
        assert await counters.add_tokens("k", 5) == 5
        leases = RedisLeases(link, 3)
        assert await leases.acquire(["a"], 1, 10) and not await leases.acquire(["a"], 1, 10)
        assert await RedisPaceGate(link).claim("a", 60, 0) == 0
        assert await SharedDocument(link).commit(0, {"keys": [link.prefix]}) == 1
        records = RedisRecords(link)
        assert await records.load("account_health") == {}
        records.put("account_health", "a", {"by": link.prefix})
        await records.flush()
        usage = RedisUsage(link)
        assert (await usage.requests({}, 10, 0))[1] == 0
        usage.record(RequestRecord(request_id=link.prefix, family="openai", route="/",
                                   time=time.time(), key_name="k", model="m", account="a",
                                   status=200).fields())
        await usage.flush()
        await counters.close()
        await leases.close()
    for link in (blue, green):
        assert (await RedisRecords(link).load("account_health"))["a"] == {"by": link.prefix}
        assert (await SharedDocument(link).load())[1] == {"keys": [link.prefix]}
        rows, total = await RedisUsage(link).requests({}, 10, 0)
        assert total == 1 and rows[0]["request_id"] == link.prefix
    keys = [key.decode() async for key in blue.client.scan_iter()]
    assert keys and all(key.startswith(("blue:", "green:")) for key in keys)


async def test_a_usage_page_reads_one_page_not_the_whole_log(open_link) -> None:
    """The request log's unfiltered pages cost one round trip whatever the
    log's size (a scan of a large log outlasted the read's deadline, which
    marked Redis down for every request); filtered pages scan the log in
    chunks by id and count each row once."""
    link = await open_link()
    usage = RedisUsage(link)
    for i in range(2 * SCAN + 5):
        usage.record(RequestRecord(request_id=f"r{i}", family="openai", route="/",
                                   time=time.time(), key_name=f"k{i % 2}", model="m",
                                   account="a", status=200).fields())
    await usage.flush()
    await link.client.config_resetstat()
    rows, total = await usage.requests(filters({}), 50, 100)
    assert total == 2 * SCAN + 5 and len(rows) == 50
    assert [r["request_id"] for r in rows[:2]] == [f"r{2 * SCAN + 4 - 100}",
                                                   f"r{2 * SCAN + 3 - 100}"]
    stats = await link.client.info("commandstats")
    assert stats["cmdstat_zrevrange"]["calls"] == 1 and "cmdstat_zrevrangebyscore" not in stats
    rows, total = await usage.requests(filters({"key_name": "k1"}), 3, SCAN - 1)
    assert total == SCAN + 2 and len(rows) == 3
    assert len({r["id"] for r in rows}) == 3 and all(r["key_name"] == "k1" for r in rows)
    assert link.ready


def filters(given: dict[str, Any]) -> dict[str, Any]:
    """The filters the usage API passes, none set but ``given``."""
    return {**dict.fromkeys(FILTERS, ""), "errors": False, **given}


async def test_pruning_a_large_backlog_takes_short_calls_and_keeps_redis_up(
        open_link, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows past retention (here a backlog far longer to drop than one
    call's deadline) are pruned a chunk per call: all of them go, the rows
    still kept stay, and the link is never marked down."""
    link = await open_link()
    writer = RedisUsage(link, raw_days=30)  # keeps them: another deployment's retention
    old = time.time() - 8 * 86400
    for i in range(12000):
        writer.record(RequestRecord(request_id=f"old{i}", family="openai", route="/",
                                    time=old + i / 1000, key_name="k", model="m",
                                    account="a", status=200).fields())
    await writer.close()
    monkeypatch.setattr(redis_link, "CALL_TIMEOUT", 0.25)
    monkeypatch.setattr(redis_usage, "SCAN", 5)
    downs: list[str] = []
    link.on_down(lambda: downs.append(link.last_error))
    pruner = RedisUsage(link, raw_days=7)
    pruner.record(RequestRecord(request_id="kept", family="openai", route="/",
                                time=time.time(), key_name="k", model="m", account="a",
                                status=200).fields())
    await pruner.flush()  # written; the writer task then prunes
    rows = link.key("usage", "rows")
    async with asyncio.timeout(60):
        while not downs and await link.client.zcard(rows) > 1:
            await asyncio.sleep(0.05)
    assert downs == [] and link.ready
    assert [r["request_id"] for r in (await pruner.requests(filters({}), 10, 0))[0]] == ["kept"]


async def test_a_config_published_afresh_is_adopted_though_its_version_matches(
        redis_server: RedisServer, open_link) -> None:
    """Redis lost the document; B joined first and published its own as
    version 1, then changed it to version 2, the number A already applied.
    A takes B's document (another epoch), instead of keeping its own
    version 2 forever while B serves a different one."""
    stores = [ConfigStore({"keys": ["k0"]}), ConfigStore({"keys": ["k0"]})]
    syncs = []
    for store in stores:
        sync = ConfigSync(store, SharedDocument(await open_link()))
        store.shared = sync.doc
        await sync.join()
        syncs.append(sync)
    one, two = stores
    await one.update(lambda data: data["keys"].append({"name": "a", "key": "a" * 9}))
    await syncs[1].catch_up()
    assert two.version == one.version == 2 and two.snapshot() == one.snapshot()
    await redis_server.astop()
    await redis_server.astart()
    await syncs[1].catch_up()  # B first: the document is gone, it publishes its own
    await two.update(lambda data: data["keys"].append({"name": "b", "key": "b" * 9}))
    assert two.version == 2
    await syncs[0].catch_up()
    assert one.snapshot() == two.snapshot()
    assert {"a", "b"} <= {k.name for k in one.config.keys} and len(one.config.keys) == 3
    await one.update(lambda data: data["keys"].append({"name": "c", "key": "c" * 9}))
    await syncs[1].catch_up()
    assert two.version == one.version == 3 and two.snapshot() == one.snapshot()


async def test_a_password_change_revokes_by_generation_whatever_the_instances_clocks(
        open_link, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session issued on an instance whose clock runs ahead is valid on the
    others, and revoked everywhere by a password change made on another just
    after; one issued after it on an instance whose clock runs behind is
    valid everywhere."""
    stores = [ConfigStore({"admin": {"jwt_secret": "s" * 48}}) for _ in range(2)]
    syncs = []
    for store in stores:
        sync = ConfigSync(store, SharedDocument(await open_link()))
        store.shared = sync.doc
        await sync.join()
        sync.start()
        syncs.append(sync)
    on_a, on_b = (AdminCredentials(store, None) for store in stores)
    real = time.time

    def issued_on_b(skew: float) -> str:
        with monkeypatch.context() as clock:
            clock.setattr(time, "time", lambda: real() + skew)
            return on_b.issue(1)[0]

    try:
        ahead = issued_on_b(+60)
        assert not revoked(on_a, ahead) and not revoked(on_b, ahead)
        await on_a.change_password("a-new-password")
        await until(lambda: stores[1].version == stores[0].version)
        for creds in (on_a, on_b):
            assert revoked(creds, ahead)
        behind = issued_on_b(-60)
        for creds in (on_a, on_b):
            assert not revoked(creds, behind)
    finally:
        for sync in syncs:
            await sync.close()


@pytest.mark.parametrize("skew", [-3600.0, 3600.0])
async def test_a_shared_tokens_age_is_the_same_on_instances_with_skewed_clocks(
        open_link, monkeypatch: pytest.MonkeyPatch, skew: float) -> None:
    """The age another instance reads of a DeepSeek token just obtained is
    about 0, whichever instance's clock is off (it decides when to log in
    again)."""
    writer, reader = SharedTokens(await open_link()), SharedTokens(await open_link())
    real = time.time
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: real() + skew)
        await writer.put("alice@example.com", "tok-1")
    found = await reader.get("alice@example.com")
    assert found is not None and found[0] == "tok-1" and found[1] < 60
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: real() - skew)
        found = await reader.get("alice@example.com")
    assert found is not None and found[1] < 60
    assert await reader.get("bob@example.com") is None


async def test_an_acl_user_limited_to_its_prefix_runs_every_store(
        redis_server: RedisServer) -> None:
    """The least an instance needs (README): an ACL user whose keys and
    channels are its prefix's, in a database of its own. Every store works
    through it, change notices reach a peer, and nothing is refused."""
    admin = aioredis.from_url(redis_server.url)
    await admin.execute_command("ACL", "SETUSER", "blue", "on", f">{REDIS_PASSWORD}",
                                "~blue:*", "&blue:*", "+@all", "-@dangerous")
    await admin.aclose()
    url = f"redis://blue:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}/3"
    links = [RedisLink(parse_state({"state": {"backend": "redis", "redis_url": url,
                                              "key_prefix": "blue:"}}, {})) for _ in range(2)]
    heard: asyncio.Queue[str] = asyncio.Queue()
    RedisRecords(links[1]).watch("account_health", lambda key, value: heard.put_nowait(key))
    downs: list[str] = []
    for link in links:
        link.on_down(lambda link=link: downs.append(link.last_error))
        await link.start()
    link = links[0]
    try:
        await subscribed(link, link.channel("records", "account_health"))
        counters = RedisCounters(link)
        assert await counters.hit("k", 5) == 0 and await counters.add_tokens("k", 3) == 3
        slot = await counters.take_slot("k", 1)
        assert slot and await counters.slots("k") == 1
        leases = RedisLeases(link, 3)
        leases.start(["a"], lambda n: None, lambda: None)
        assert await leases.acquire(["a"], 1, 10)
        assert await RedisPaceGate(link).claim("a", 1, 5) == 0
        assert await SharedDocument(link).commit(0, {"keys": ["k"]}) == 1
        tokens = SharedTokens(link)
        assert await tokens.lock("a", 5)
        await tokens.put("a", "tok")
        await tokens.unlock("a")
        await RedisResponses(link, lambda: 60).keep("me", {"id": "resp_acl", "output": []}, [])
        records = RedisRecords(link)
        records.put("account_health", "a", {"state": "healthy"})
        await records.flush()
        assert await asyncio.wait_for(heard.get(), 5) == "a"
        usage = RedisUsage(link)
        usage.record(RequestRecord(request_id="acl", family="openai", route="/",
                                   time=time.time(), key_name="k", model="m", account="a",
                                   status=200).fields())
        await usage.flush()
        assert (await usage.requests(filters({}), 5, 0))[1] == 1
        await counters.close()
        await leases.close()
        assert downs == [] and all(link.ready for link in links)
    finally:
        for link in links:
            await link.close()


@pytest.mark.parametrize("url, problem", [
    (f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/O", "database that is not a number"),
    (f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/db1", "database that is not a number"),
    (f"unix:///run/redis.sock?db=one&password={REDIS_PASSWORD}", "database that is not"),
    (f"rediss://:{REDIS_PASSWORD}@127.0.0.1:63 79/0", "port that is not a number"),
])
def test_a_redis_url_the_client_would_misread_is_refused_naming_the_field(
        url: str, problem: str) -> None:
    """The client quietly takes db 0 for a database it cannot read: two
    deployments meant to be apart would share one. Refused at load instead,
    without quoting the URL's password."""
    with pytest.raises(ConfigError) as caught:
        parse_state({"state": {"backend": "redis", "redis_url": url}}, {})
    assert caught.value.field == "state.redis_url" and problem in str(caught.value)
    assert REDIS_PASSWORD not in str(caught.value)
    for fine in ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379/", "rediss://h:1/15",
                 "unix:///run/redis.sock?db=2"):
        assert parse_state({"state": {"redis_url": fine}}, {}).redis_url == fine


async def test_a_dropped_subscription_is_not_an_outage_and_what_it_missed_is_caught_up(
        redis_server: RedisServer, open_link) -> None:
    """Redis closing the pub/sub connection (its buffer limit for slow
    subscribers, CLIENT KILL, a proxy's idle timeout) while it still answers:
    the link stays up (no 503s), subscribes again, and a change made while
    no notice could be heard reaches the watcher."""
    watcher, peer = await open_link(), await open_link()
    heard: asyncio.Queue[str] = asyncio.Queue()
    RedisRecords(watcher).watch("account_health", lambda key, value: heard.put_nowait(key))
    downs: list[str] = []
    watcher.on_down(lambda: downs.append(watcher.last_error))
    channel = watcher.channel("records", "account_health")
    await subscribed(watcher, channel)
    assert heard.empty()
    admin = aioredis.from_url(redis_server.url)
    try:
        await admin.hset(peer.key("records", "account_health"), "missed", b'{"state": "disabled"}')
        assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
        assert await asyncio.wait_for(heard.get(), 5) == "missed"  # caught up
        await subscribed(watcher, channel)
        ours = RedisRecords(peer)
        ours.put("account_health", "live", {"state": "healthy"})
        await ours.flush()
        assert await asyncio.wait_for(heard.get(), 5) == "live"
        assert downs == [] and watcher.ready
    finally:
        await admin.aclose()


async def test_if_match_guards_config_writes_across_instances(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances) -> None:
    """An ETag read on one instance is the same on the other; a write sent
    with a tag read before a change made on the other instance is refused
    (412), and with the current tag it applies and reaches both."""
    group = await instances(shared_config(fake_upstream, redis_server), 2)
    a, b = group.running
    async with aiohttp.ClientSession() as http:
        on_a, on_b = AdminClient(http, a), AdminClient(http, b)
        await on_a.login(group.admin_key)
        await on_b.login(group.admin_key)

        async def etag(admin: AdminClient) -> str:
            async with http.get(admin.inst.url + "/admin/config",
                                headers={"Authorization": f"Bearer {admin.token}"}) as resp:
                assert resp.status == 200
                return resp.headers["ETag"]

        async def post(admin: AdminClient, alias: str, tag: str) -> tuple[int, Any]:
            async with http.post(admin.inst.url + "/admin/config",
                                 json={"model_aliases": {alias: "deepseek-chat"}},
                                 headers={"Authorization": f"Bearer {admin.token}",
                                          "If-Match": tag}) as resp:
                return resp.status, await resp.json()

        read = await etag(on_a)
        assert await etag(on_b) == read
        status, body = await post(on_b, "from-b", read)
        assert status == 200, body
        status, body = await post(on_a, "from-a", read)  # read before B's change
        assert status == 412 and "changed since it was read" in body["detail"]

        async def a_caught_up() -> bool:
            return await etag(on_a) == await etag(on_b)

        await within(2, a_caught_up)
        status, body = await post(on_a, "from-a", await etag(on_a))
        assert status == 200, body

        async def both_show_it() -> bool:  # the maps a POST sends replace the old ones
            for admin in (on_a, on_b):
                _, view = await admin.call("GET", "/admin/config")
                if set(view.get("model_aliases") or {}) != {"from-a"}:
                    return False
            return True

        await within(2, both_show_it)


async def test_admin_login_works_once_redis_answers_after_an_unreachable_start(
        proxy_factory) -> None:
    """A first start with no session-signing secret yet, while Redis does not
    answer: the secret cannot be stored then; once Redis answers it is, and
    the admin can log in (not 'not ready yet' until a restart)."""
    server = RedisServer()
    proxy = await proxy_factory({"state": {"backend": "redis", "redis_url": server.url,
                                           "lease_ttl_seconds": 3}})
    async with aiohttp.ClientSession() as http:
        refused = await login(http, proxy.url, proxy.admin_key)
        assert refused.status == 401 and b"not ready yet" in refused.raw
        server.start()
        try:
            async with asyncio.timeout(15):
                while (reply := await login(http, proxy.url, proxy.admin_key)).status != 200:
                    await asyncio.sleep(0.05)
            assert reply.json()["token"]
            assert proxy.store.snapshot()["admin"]["jwt_secret"]
        finally:
            server.close()


async def test_a_shorter_slot_ttl_elsewhere_never_cuts_a_slot_short(open_link) -> None:
    """Instances with different lease_ttl_seconds (a change rolling out): a
    take or renewal by the one with the shorter TTL must not make the key's
    set, with the other's slot in it, expire before that slot does."""
    long_ttl = RedisCounters(await open_link(), 30)
    short_ttl = RedisCounters(await open_link(), 2)
    slots = long_ttl.link.key("slots", "k")
    assert await long_ttl.take_slot("k", 5)
    assert await short_ttl.take_slot("k", 5)
    assert await long_ttl.link.client.pttl(slots) > 25_000
    await short_ttl._slots.renew()
    assert await long_ttl.link.client.pttl(slots) > 25_000
    assert await short_ttl.slots("k") == 2
    await long_ttl.close()
    await short_ttl.close()


async def test_a_keys_slots_in_use_count_again_after_redis_loses_its_data(open_link) -> None:
    """FLUSHALL while A runs a request of a concurrent: 1 key (the link
    stays up): B's take, the first to find the loss, waits while Redis
    settles and A puts its slot back (once), so it is refused until A gives
    it; a slot released before the loss is not resurrected."""
    a, b = RedisCounters(await open_link()), RedisCounters(await open_link())
    await subscribed(a.link, a.link.channel("state", "lost"), 2)
    given = await a.take_slot("other", 1)
    assert given
    a.give_slot("other", given)
    await a._slots.releases.settle()
    slot = await a.take_slot("k", 1)
    assert slot and not await b.take_slot("k", 1)
    await a.link.client.flushall()
    assert not await b.take_slot("k", 1)  # B finds the loss; A hears of it
    await a._slots.renew("restore")
    assert await b.slots("k") == 1 and await b.slots("other") == 0
    assert not await b.take_slot("k", 1)
    a.give_slot("k", slot)
    await a._slots.releases.settle()
    taken = await b.take_slot("k", 1)
    assert taken
    b.give_slot("k", taken)
    await a.close()
    await b.close()


async def test_the_rate_wait_counts_a_window_fuller_than_a_lowered_limit(open_link) -> None:
    """Six requests in the window and a limit lowered to two: room comes when
    the fifth leaves, not the first (the wait named the first's leaving)."""
    counters = RedisCounters(await open_link())
    now_ms = int((await counters.link.client.time())[0] * 1000)
    window = counters.link.key("rpm", "k")
    await counters.link.client.zadd(window, {f"r{i}": now_ms - 30_000 + i * 5000
                                             for i in range(6)})
    wait = await counters.hit("k", 2)
    assert 49 <= wait <= 51  # the fifth (at -10 s) leaves 50 s from now
    await counters.close()


async def test_a_login_lock_whose_holder_died_is_free_within_its_lease(
        open_link, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock is asked for the whole login timeout (125 s by default). Its
    holder keeps it past the short lease while alive; killed mid-login (its
    renewal stops, nothing unlocks) the others may log in within the lease,
    not after two minutes of every request for the account waiting."""
    monkeypatch.setattr(tokens_module, "LOCK_LEASE_SECONDS", 1.0)
    link = await open_link()
    holder, other = SharedTokens(link), SharedTokens(await open_link())
    assert await holder.lock("u0@example.com", 125)
    taken = (await link.client.time())[0]

    async def lease_passed_twice() -> bool:
        return (await link.client.time())[0] >= taken + 3

    await within(10, lease_passed_twice)
    assert not await other.lock("u0@example.com", 125)  # renewed by its live holder
    holder._keepers["u0@example.com"].cancel()  # killed with -9: nothing renews it
    await within(3, lambda: other.lock("u0@example.com", 125))
    await other.unlock("u0@example.com")
    assert not await link.client.exists(link.key("login-lock", "u0@example.com"))
