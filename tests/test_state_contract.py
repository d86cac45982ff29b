"""The same store contract, run against both backends: embedded (one SQLite
file, in-process counters and pacing) and Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from test_state_instances import within

from ds2proxy.admin.credentials import AdminCredentials
from ds2proxy.config_store import ConfigStore
from ds2proxy.errors import AuthenticationFailed
from ds2proxy.limits import KeyLimiter
from ds2proxy.request_record import RequestRecord
from ds2proxy.state.counters import KeyCounters, MemoryCounters
from ds2proxy.state.errors import StateUnavailable
from ds2proxy.state.pace_gate import MemoryPaceGate, PaceGate
from ds2proxy.state.redis_limits import RedisCounters, RedisPaceGate
from ds2proxy.state.redis_link import RedisLink
from ds2proxy.state.redis_records import RedisRecords
from ds2proxy.state.redis_usage import RedisUsage
from ds2proxy.state.settings import parse_state
from ds2proxy.state.sqlite import SQLiteStore
from ds2proxy.state.store import StateStore
from ds2proxy.state.usage import SQLiteUsage, UsageStore
from ds2proxy.testing.redis_server import RedisServer


@dataclass
class Backend:
    """One backend's stores; ``reopen`` gives fresh ones on the same data
    (a restart embedded, another instance with Redis)."""

    name: str
    records: StateStore
    usage: UsageStore
    counters: KeyCounters
    pacing: PaceGate
    reopen: Callable[[], Any]


def redis_link(server: RedisServer) -> RedisLink:
    return RedisLink(parse_state({"state": {"backend": "redis", "redis_url": server.url}}, {}))


@pytest.fixture(params=["embedded", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "embedded":
        path = tmp_path / "config.state.sqlite"
        made: list[Any] = []

        async def reopen_embedded() -> tuple[StateStore, UsageStore]:
            pair = (SQLiteStore(path), SQLiteUsage(str(path)))
            made.extend(pair)
            return pair

        records, usage = await reopen_embedded()
        yield Backend("embedded", records, usage, MemoryCounters(), MemoryPaceGate(),
                      reopen_embedded)
        for store in made:
            await store.close()
        return
    with RedisServer() as server:
        links = [redis_link(server)]

        async def reopen_redis() -> tuple[StateStore, UsageStore]:
            links.append(redis_link(server))
            await links[-1].start()
            return RedisRecords(links[-1]), RedisUsage(links[-1])

        await links[0].start()
        yield Backend("redis", RedisRecords(links[0]), RedisUsage(links[0]),
                      RedisCounters(links[0]), RedisPaceGate(links[0]), reopen_redis)
        for link in links:
            await link.close()


def row(ts: float, **fields: Any) -> dict:
    record = RequestRecord(request_id=fields.pop("request_id", f"r{ts}"),
                           family=fields.pop("family", "openai"),
                           route="/v1/chat/completions", time=ts, key_name="k", model="m",
                           account="a", status=200, prompt_tokens=3, completion_tokens=4)
    for name, value in fields.items():
        setattr(record, name, value)
    return record.fields()


# -- records -------------------------------------------------------------------------


async def test_records_keep_the_newest_value_and_deletions(backend: Backend) -> None:
    backend.records.put("account_health", "a", {"state": "cooling_down", "until": 1.0})
    backend.records.put("account_health", "a", {"state": "disabled"})
    backend.records.put("account_health", "b", {"state": "healthy"})
    backend.records.put("account_health", "b", None)
    backend.records.put("other", "a", {"x": 1})
    await backend.records.flush()
    records, _ = await backend.reopen()
    assert await records.load("account_health") == {"a": {"state": "disabled"}}
    assert await records.load("other") == {"a": {"x": 1}}


# -- usage ---------------------------------------------------------------------------


async def test_usage_rollups_filters_and_rows(backend: Backend) -> None:
    store, now = backend.usage, time.time()
    store.record(row(now, request_id="first"))
    store.record(row(now, key_name="other", status=429, error_code="key_rate_limit"))
    store.record(row(now, family="claude", prompt_tokens=10, reasoning_tokens=2))
    await store.flush()
    _, usage = await backend.reopen()  # what one wrote, another reads
    totals = {r["name"]: r for r in await usage.totals("key_name", "minute", now - 60)}
    assert totals["k"]["requests"] == 2 and totals["k"]["prompt_tokens"] == 13
    assert totals["other"]["errors"] == 1
    families = {r["name"]: r["requests"] for r in await usage.totals("family", "day", 0)}
    assert families == {"openai": 2, "claude": 1}
    [bucket] = await usage.series("hour", now - 3600)
    assert (bucket["requests"], bucket["errors"], bucket["completion_tokens"],
            bucket["reasoning_tokens"]) == (3, 1, 12, 2)
    [only] = await usage.series("hour", now - 3600, "other")
    assert only["requests"] == 1
    rows, total = await usage.requests({"errors": True}, 10, 0)
    assert total == 1 and rows[0]["error_code"] == "key_rate_limit"
    rows, total = await usage.requests({}, 2, 1)
    assert total == 3 and len(rows) == 2 and rows[-1]["request_id"] == "first"
    assert (await usage.request(rows[-1]["id"]))["request_id"] == "first"
    assert await usage.request(10_000) is None


async def test_totals_of_one_key_leave_the_other_keys_out(backend: Backend) -> None:
    """``GET /admin/usage?key_name=`` narrowed its series to the key but its
    totals stayed everybody's, so a key's page showed the whole server's
    models, accounts and families."""
    store, now = backend.usage, time.time()
    store.record(row(now, key_name="team", model="deepseek-chat"))
    store.record(row(now, key_name="other", model="deepseek-reasoner", family="claude"))
    await store.flush()
    models = await store.totals("model", "hour", now - 3600, key_name="team")
    assert [(r["name"], r["requests"]) for r in models] == [("deepseek-chat", 1)]
    assert {r["name"] for r in await store.totals("family", "hour", now - 3600)} == {
        "openai", "claude"}


async def test_a_model_name_cannot_pose_as_another_account_or_family(backend: Backend) -> None:
    """The model is the client's string; with Redis the rollup cell joined its
    dimensions with \\x1f, so a model holding it shifted the account and
    family columns: a client could add rows for any account it named."""
    store, now = backend.usage, time.time()
    store.record(row(now, model="m\x1fvictim@example.com\x1fclaude", account=""))
    await store.flush()
    accounts = {r["name"]: r["requests"] for r in await store.totals("account", "hour", 0)}
    families = {r["name"]: r["requests"] for r in await store.totals("family", "hour", 0)}
    models = [r["name"] for r in await store.totals("model", "hour", 0)]
    assert accounts == {"": 1} and families == {"openai": 1}
    assert len(models) == 1 and models[0].startswith("m") and "victim@example.com" in models[0]


async def test_a_row_the_store_cannot_write_does_not_stop_later_ones(backend: Backend) -> None:
    """A count too large for a 64-bit integer: SQLite's OverflowError ended its
    writer thread, and the Redis writer's task died with orjson's TypeError;
    either way later rows were not written and a flush could wait forever."""
    store, now = backend.usage, time.time()
    store.record(row(now, request_id="unwritable", prompt_tokens=10**30))
    await asyncio.wait_for(store.flush(), 10)
    store.record(row(now, request_id="after"))
    await asyncio.wait_for(store.flush(), 10)
    rows, total = await asyncio.wait_for(store.requests({}, 10, 0), 10)
    assert total == 1 and rows[0]["request_id"] == "after"


async def test_a_row_missing_a_field_does_not_stop_later_ones(backend: Backend) -> None:
    """A row built by hand (a plugin's, an older caller's) without one of the
    fields: the SQLite writer thread died on its KeyError, after which every
    read and flush waited for it forever."""
    store, now = backend.usage, time.time()
    broken = row(now, request_id="broken")
    del broken["latency_ms"]
    store.record(broken)
    await asyncio.wait_for(store.flush(), 10)
    store.record(row(now, request_id="after"))
    await asyncio.wait_for(store.flush(), 10)
    rows, total = await asyncio.wait_for(store.requests({}, 10, 0), 10)
    assert [r["request_id"] for r in rows] == ["after"] and total == 1


async def test_a_page_of_the_log_leaves_kept_bodies_to_the_details(backend: Backend) -> None:
    """Kept bodies may be a megabyte each: a page of 500 rows carried them
    all (half a gigabyte built in memory for a list that shows none)."""
    store, now = backend.usage, time.time()
    body = "b" * 200_000
    for n in range(3):
        store.record(row(now, request_id=f"r{n}", request_body=body))
    await store.flush()
    for filters in ({}, {"key_name": "k"}):
        page, total = await store.requests(filters, 10, 0)
        assert total == 3 and all("request_body" not in r for r in page)
        assert {r["request_id"] for r in page} == {"r0", "r1", "r2"}
    assert (await store.request(page[0]["id"]))["request_body"] == body


async def test_a_shortened_retention_prunes_without_a_reopen(backend: Backend) -> None:
    """Retention is a live setting, but the store read it once when opened: a
    shortened one (say, to stop keeping request bodies) waited for a restart."""
    store, now = backend.usage, time.time()
    store.record(row(now - 3 * 86400, request_id="old"))
    store.record(row(now, request_id="new"))
    await store.flush()
    assert (await store.requests({}, 10, 0))[1] == 2
    store.retain(1, 90)
    store.record(row(now, request_id="newer"))
    await store.flush()

    async def pruned() -> bool:
        rows, _ = await store.requests({}, 10, 0)
        return [r["request_id"] for r in rows] == ["newer", "new"]

    await within(10, pruned)
    assert len(await store.series("minute", now - 4 * 86400)) == 1


# -- key counters -----------------------------------------------------------------------


async def test_requests_per_minute_window(backend: Backend) -> None:
    counters = backend.counters
    assert await counters.hit("k", 2) == 0
    assert await counters.hit("k", 2) == 0
    wait = await counters.hit("k", 2)
    assert 0 < wait <= 60
    assert await counters.count("k") == 2
    assert await counters.hit("other", 2) == 0  # per key
    assert await counters.hit("s", 1, window=5) == 0
    assert 0 < await counters.hit("s", 1, window=5) <= 5  # the wait follows the window


async def test_tokens_per_day_add_up(backend: Backend) -> None:
    counters = backend.counters
    assert await counters.tokens("k") == 0
    assert await counters.add_tokens("k", 30) == 30
    assert await counters.add_tokens("k", 12) == 42
    assert await counters.tokens("k") == 42 and await counters.tokens("j") == 0


async def test_concurrent_slots_are_limited_and_released(backend: Backend) -> None:
    counters = backend.counters
    one = await counters.take_slot("k", 2)
    two = await counters.take_slot("k", 2)
    assert one and two and one != two
    assert await counters.take_slot("k", 2) is None  # both held
    assert await counters.take_slot("other", 1)      # per key
    assert await counters.slots("k") == 2
    counters.give_slot("k", one)
    await drained(counters)
    assert await counters.slots("k") == 1
    three = await counters.take_slot("k", 2)
    assert three and await counters.take_slot("k", 2) is None
    counters.give_slot("k", two)
    counters.give_slot("k", three)
    await drained(counters)
    assert await counters.slots("k") == 0


async def test_a_slot_and_the_rpm_window_are_taken_together_or_not_at_all(
        backend: Backend) -> None:
    """``hit_and_take_slot``: a refused slot counts nothing in the window, a
    full window takes no slot, and the wait named is the window's."""
    counters = backend.counters
    wait, first = await counters.hit_and_take_slot("k", 2, 1)
    assert wait == 0 and first
    wait, refused = await counters.hit_and_take_slot("k", 2, 1)
    assert (wait, refused) == (0, None)  # the one slot is held
    assert await counters.count("k") == 1 and await counters.slots("k") == 1
    counters.give_slot("k", first)
    await drained(counters)
    wait, second = await counters.hit_and_take_slot("k", 2, 1)
    assert wait == 0 and second
    counters.give_slot("k", second)
    await drained(counters)
    wait, none = await counters.hit_and_take_slot("k", 2, 1)
    assert none is None and 0 < wait <= 60  # the window is full: no slot taken
    assert await counters.slots("k") == 0 and await counters.count("k") == 2


async def drained(counters: KeyCounters) -> None:
    """Until the releases handed to the store's background tasks are sent."""
    releases = getattr(getattr(counters, "_slots", None), "releases", None)
    if releases is not None:
        await releases.settle()


# -- pacing -------------------------------------------------------------------------------


async def test_pacing_interval_and_hourly_cap(backend: Backend) -> None:
    gate = backend.pacing
    assert await gate.claim("a", 30.0, 0) == 0
    wait = await gate.claim("a", 30.0, 0)
    assert 25 < wait <= 30
    assert await gate.claim("b", 0.0, 2) == 0
    assert await gate.claim("b", 0.0, 2) == 0
    assert 3500 < await gate.claim("b", 0.0, 2) <= 3600


# -- Redis only: what several instances add ---------------------------------------------------


async def test_a_dead_instances_slots_expire_and_an_outage_leaks_none(
        redis_server: RedisServer) -> None:
    one, two = redis_link(redis_server), redis_link(redis_server)
    await one.start()
    await two.start()
    live, dead = RedisCounters(one, 2), RedisCounters(two, 2)
    try:
        assert await dead.take_slot("k", 1)
        await asyncio.sleep(2.5)  # past the 2 s TTL: renewal (every ttl/3) kept it
        assert await live.take_slot("k", 1) is None
        # What kill -9 leaves behind: a slot nobody renews or releases.
        dead._slots._renewer.cancel()
        dead._slots._held.clear()
        await two.close()
        start = time.monotonic()
        while (slot := await live.take_slot("k", 1)) is None:
            assert time.monotonic() - start < 3, "a dead instance's slot outlived its TTL"
            await asyncio.sleep(0.05)
        await redis_server.astop()
        with pytest.raises(StateUnavailable):  # a 503, never a slot taken blindly
            await live.take_slot("j", 1)
        live.give_slot("k", slot)  # released while Redis is down: replayed when back
        await redis_server.astart()
        start = time.monotonic()
        while not one.ready or await live.slots("k"):
            assert time.monotonic() - start < 15, "a slot released during the outage leaked"
            await asyncio.sleep(0.05)
        assert await live.take_slot("k", 1)
    finally:
        await live.close()
        await one.close()


async def test_a_change_reaches_the_other_instances_watchers(redis_server: RedisServer) -> None:
    one, two = redis_link(redis_server), redis_link(redis_server)
    seen: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    mine, theirs = RedisRecords(one), RedisRecords(two)
    mine.watch("account_health", lambda k, v: seen.put_nowait(("self", k)))
    theirs.watch("account_health", lambda k, v: seen.put_nowait((k, v)))
    await one.start()
    await two.start()
    try:
        await asyncio.sleep(0.2)  # both listeners subscribed
        mine.put("account_health", "a", {"state": "cooling_down"})
        assert await asyncio.wait_for(seen.get(), 5) == ("a", {"state": "cooling_down"})
        mine.put("account_health", "a", None)
        assert await asyncio.wait_for(seen.get(), 5) == ("a", None)
        assert seen.empty()  # an instance is not told of its own changes
    finally:
        await one.close()
        await two.close()


async def test_usage_rows_wait_out_a_redis_outage(redis_server: RedisServer) -> None:
    link = redis_link(redis_server)
    back = asyncio.Event()
    link.on_up(back.set)
    await link.start()
    store = RedisUsage(link)
    try:
        back.clear()
        await redis_server.astop()
        now = time.time()
        for i in range(5):
            store.record(row(now, request_id=f"r{i}"))
        await asyncio.sleep(0.1)
        assert store.rows_written == 0
        await redis_server.astart()
        await asyncio.wait_for(store.flush(), 15)
        await asyncio.wait_for(back.wait(), 15)
        rows, total = await store.requests({}, 10, 0)
        assert total == 5 and {r["request_id"] for r in rows} == {f"r{i}" for i in range(5)}
    finally:
        await link.close()


async def test_writes_of_many_requests_share_one_round_trip(redis_server: RedisServer
                                                            ) -> None:
    """Health records and usage rows put in one gathering pause go out in one
    pipeline each, and every row and the newest record value land."""
    link = redis_link(redis_server)
    await link.start()
    records, usage = RedisRecords(link), RedisUsage(link)
    try:
        await link.call(lambda: link.client.config_resetstat())
        now = time.time()
        for i in range(30):  # requests ending one after another
            records.put("account_health", "a", {"requests_today": i})
            usage.record(row(now, request_id=f"r{i}"))
            await asyncio.sleep(0)
        await records.flush()
        await usage.flush()
        stats = await link.call(lambda: link.client.info("commandstats"))
        # One each; two if this process stalled past the pause (a loaded machine).
        assert stats["cmdstat_hset"]["calls"] <= 2
        assert stats["cmdstat_exec"]["calls"] <= 2
        assert (await records.load("account_health"))["a"] == {"requests_today": 29}
        assert (await usage.requests({}, 50, 0))[1] == 30
    finally:
        await link.close()


async def test_a_logout_on_one_instance_revokes_the_session_on_the_other(
        redis_server: RedisServer) -> None:
    doc = {"admin": {"jwt_secret": "s" * 48}}
    one, two = redis_link(redis_server), redis_link(redis_server)
    on_one = AdminCredentials(ConfigStore(doc), None, records=RedisRecords(one))
    on_two = AdminCredentials(ConfigStore(doc), None, records=RedisRecords(two))
    await one.start()
    await two.start()
    try:
        token, _ = on_one.issue(1)
        claims = on_two.decode(token)  # one secret: valid on both
        await asyncio.sleep(0.2)  # both listeners subscribed
        on_one.log_out(on_one.decode(token))
        deadline = time.monotonic() + 5
        while True:
            try:
                on_two.decode(token)
            except AuthenticationFailed:
                break
            assert time.monotonic() < deadline, "the logout never reached the other instance"
            await asyncio.sleep(0.02)
        third = AdminCredentials(ConfigStore(doc), None, records=RedisRecords(one))
        await third.load_logouts()  # an instance started later knows it too
        with pytest.raises(AuthenticationFailed):
            third.decode(token)
        assert claims.jti
    finally:
        await one.close()
        await two.close()


async def test_config_writes_on_two_stores_merge_and_bad_versions_are_skipped(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    from ds2proxy.state.shared_config import ConfigSync, SharedDocument

    link = redis_link(redis_server)
    await link.start()
    one, two = ConfigStore({"keys": ["k0"]}), ConfigStore({"keys": ["other"]})
    syncs = [ConfigSync(store, SharedDocument(link)) for store in (one, two)]
    try:
        for sync in syncs:
            sync.store.shared = sync.doc
            await sync.join()
        assert two.snapshot()["keys"] == one.snapshot()["keys"]  # the first one's document

        def adder(name: str) -> Callable[[dict], None]:
            return lambda data: data["keys"].append({"name": name, "key": f"sk-{name}"})

        await asyncio.gather(*(store.update(adder(f"{tag}{i}"))
                               for i in range(10) for tag, store in (("a", one), ("b", two))))
        await syncs[0].catch_up()
        await syncs[1].catch_up()
        names = {k.name for k in one.config.keys}
        assert {f"{t}{i}" for i in range(10) for t in "ab"} <= names
        assert one.snapshot() == two.snapshot() and one.version == two.version == 21

        await syncs[0].doc.commit(one.version, {"keys": "not a list"})
        await syncs[0].catch_up()
        await syncs[0].catch_up()
        assert {k.name for k in one.config.keys} == names
        assert sum("is not valid" in r.message for r in caplog.records) == 1
    finally:
        await link.close()


async def test_token_totals_reach_the_cluster_and_survive_an_outage(
        redis_server: RedisServer) -> None:
    """Two limiters (two instances) add a key's tokens in the background;
    both see the cluster's total, and tokens Redis refused are sent later."""
    links = [redis_link(redis_server), redis_link(redis_server)]
    limiters = [KeyLimiter(), KeyLimiter()]
    for link, limiter in zip(links, limiters):
        await link.start()
        limiter.shared = RedisCounters(link)
    one, two = limiters
    try:
        for _ in range(10):  # requests ending one after another on both
            one.add_tokens("k", 3)
            two.add_tokens("k", 4)
            await asyncio.sleep(0)
        await one.flush()
        await two.flush()
        assert await one.shared.tokens("k") == 70
        assert one.tokens_today("k") >= 30 and two.tokens_today("k") == 70
        await redis_server.astop()
        one.add_tokens("k", 5)  # refused: owed, logged
        await one.flush()
        assert not links[0].ready
        await redis_server.astart()  # empty again: the day's total restarts
        async with asyncio.timeout(10):
            while not links[0].ready:
                await asyncio.sleep(0.02)
        one.add_tokens("k", 1)  # the owed tokens go with these
        await one.flush()
        assert await one.shared.tokens("k") == 6 and one.tokens_today("k") == 6
    finally:
        for link in links:
            await link.close()
