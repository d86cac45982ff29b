"""Account pools sharing leases on a real Redis (two pools = two instances in
one process), and the stored-response contract on both backends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from ds2proxy.config import AccountConfig, RuntimeSettings
from ds2proxy.errors import RateLimited
from ds2proxy.scheduler import AccountPool
from ds2proxy.state.errors import StateUnavailable
from ds2proxy.state.leases import RedisLeases
from ds2proxy.state.responses import RedisResponses
from ds2proxy.testing.redis_server import RedisServer
from plugins.openai.responses_store import ResponseStore

ACCOUNTS = tuple(AccountConfig(email=f"u{i}@example.com", password="p") for i in range(2))
TTL = 3


@pytest.fixture
async def pools(open_link) -> AsyncIterator[Callable[..., AccountPool]]:
    """``make(inflight=1, glob=0, timeout=10, queue=None)``: a pool as one more instance."""
    made: list[AccountPool] = []

    async def make(inflight: int = 1, glob: int = 0, timeout: float = 10.0,
                   queue: int | None = None) -> AccountPool:
        link = await open_link()
        pool = AccountPool(ACCOUNTS, RuntimeSettings(account_max_inflight=inflight,
                                                     global_max_inflight=glob,
                                                     queue_timeout_seconds=timeout,
                                                     account_max_queue=queue))
        pool.share(RedisLeases(link, TTL))
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.shared.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def live_leases(pool: AccountPool) -> int:
    await pool.shared.renew()
    return pool.shared.total


async def test_limits_hold_across_pools_and_release_wakes_the_other(pools) -> None:
    a, b = await pools(), await pools()
    held = [await a.acquire(), await a.acquire()]
    assert {h.account.identifier for h in held} == {acc.identifier for acc in ACCOUNTS}
    waiter = asyncio.create_task(b.acquire())
    await until(lambda: b.waiting == 1)
    held[0].release()  # freed on A: B's waiter is woken through pub/sub
    lease = await asyncio.wait_for(waiter, 5)
    assert lease.account.identifier == held[0].account.identifier
    for item in (held[1], lease):
        item.release()
    await a.shared.releases.settle()
    await b.shared.releases.settle()
    assert await live_leases(a) == 0


async def test_global_limit_is_cluster_wide(pools) -> None:
    a, b = await pools(inflight=4, glob=3, timeout=0.3), await pools(inflight=4, glob=3,
                                                                        timeout=0.3)
    held = [await a.acquire(), await a.acquire(), await b.acquire()]
    with pytest.raises(RateLimited):
        await b.acquire()
    for lease in held:
        lease.release()


async def test_cancelled_waiter_and_holder_leave_nothing(pools) -> None:
    """A client that goes away while queued gives back its place in the
    cluster's line too, and the request behind it is served."""
    a, b = await pools(), await pools()
    held = [await a.acquire(), await a.acquire()]
    waiter = asyncio.create_task(b.acquire())
    await until(lambda: b.shared.in_line(b._waiters._line[0].ticket) if b.waiting else False)
    behind = asyncio.create_task(a.acquire())
    await until(lambda: a.waiting == 1)
    waiter.cancel()  # a client that went away while queued
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert b.waiting == 0
    await b.shared.releases.settle()
    assert await line(b) == 1  # only the request behind it
    held[0].release()
    lease = await asyncio.wait_for(behind, 5)
    for item in (held[1], lease):
        item.release()
    await a.shared.releases.settle()
    assert await live_leases(a) == 0 and await line(a) == 0


async def line(pool: AccountPool) -> int:
    """Tickets in the cluster's line, and their accounts' entries (kept alike)."""
    client, key = pool.shared.link.client, pool.shared.link.key
    tickets = await client.zcard(key("leases", "line"))
    assert tickets == await client.zcard(key("leases", "tickets"))
    assert tickets == await client.hlen(key("leases", "wants"))
    return tickets


async def test_hundreds_of_waiters_over_two_instances_are_served_in_arrival_order(
        pools) -> None:
    """300 requests wait, alternately on A and B (more than one decision
    looks down the line), for the one lease the global limit allows; each
    served request ends at once. They are served exactly in the order they
    arrived, and the line empties."""
    a, b = (await pools(glob=1, queue=1000, timeout=60),
            await pools(glob=1, queue=1000, timeout=60))
    held = [await a.acquire()]
    served: list[int] = []

    async def request(pool: AccountPool, n: int) -> None:
        lease = await pool.acquire()
        served.append(n)
        lease.release()

    tasks = []
    for n in range(300):
        pool = (a, b)[n % 2]
        tasks.append(asyncio.create_task(request(pool, n)))
        await until(lambda: a.waiting + b.waiting == n + 1)
    for lease in held:
        lease.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert served == list(range(300))
    await a.shared.releases.settle()
    await b.shared.releases.settle()
    assert await line(a) == 0 and await live_leases(a) == 0


async def test_waiters_wanting_the_same_accounts_in_any_order_share_one_list(pools) -> None:
    """Each ticket used to keep its whole account list (30 kB with a
    thousand accounts), read back by every decision for every ticket ahead
    (~15 ms of Redis per call with a full line). Tickets wanting the same
    accounts, whatever their order of preference, now name one list kept
    once, which expires with them."""
    a, b = await pools(glob=1), await pools(glob=1)
    everyone = [acc.identifier for acc in ACCOUNTS]
    held = await a.shared.acquire(everyone, 1, 1)
    assert held
    tickets = []
    for shared, order in ((a.shared, everyone), (b.shared, everyone[::-1])) * 2:
        ticket = shared.ticket()
        assert await shared.acquire(order, 1, 1, ticket, join=True) is None
        tickets.append((shared, ticket))
    client, key = a.shared.link.client, a.shared.link.key
    ids = set(await client.hvals(key("leases", "wants")))
    assert len(ids) == 1 and await line(a) == 4
    (only,) = ids
    kept = key("leases", "wants", only.decode())
    assert json.loads(await client.get(kept)) == sorted(everyone)
    assert 0 < await client.pttl(kept) <= (TTL + 1) * 1000
    a.shared.release(*held)
    for shared, ticket in tickets:
        shared.leave(ticket)
    await a.shared.releases.settle()
    await b.shared.releases.settle()
    assert await line(a) == 0 and await live_leases(a) == 0


async def test_a_lease_on_an_account_removed_meanwhile_counts_until_its_request_ends(
        pools) -> None:
    """An account is removed (an admin change) while a request runs on it:
    the request goes on, so its lease is still renewed and still counts
    against the global limit on every instance, as it does embedded. It was
    left to expire, and another instance then ran one request too many."""
    a, b = await pools(glob=1), await pools(glob=1, queue=0)
    lease = await a.acquire()
    client, key = a.shared.link.client, a.shared.link.key
    expiry = await client.zscore(key("leases", "all"), lease.shared_id)
    kept = tuple(acc for acc in ACCOUNTS if acc.identifier != lease.account.identifier)
    a.configure(kept, RuntimeSettings(account_max_inflight=1, global_max_inflight=1))
    async with asyncio.timeout(TTL * 3):
        while (await client.time())[0] * 1000 <= expiry + 500:  # past its first expiry
            await asyncio.sleep(0.05)
    assert await live_leases(b) == 1
    with pytest.raises(RateLimited):
        await b.acquire()
    lease.release()
    await a.shared.releases.settle()
    (await b.acquire()).release()
    await b.shared.releases.settle()
    assert await live_leases(b) == 0


async def test_unrenewed_leases_expire_and_waiters_wake(pools) -> None:
    a, b = await pools(), await pools(timeout=TTL * 3)
    held = [await a.acquire(), await a.acquire()]
    a.shared._renewer.cancel()  # A stops renewing, as if killed; its leases stay behind
    waiter = asyncio.create_task(b.acquire())
    await until(lambda: b.waiting == 1)
    lease = await asyncio.wait_for(waiter, TTL * 2)
    assert lease.account.identifier in {h.account.identifier for h in held}
    lease.release()


async def test_release_while_redis_is_down_is_replayed(redis_server: RedisServer, pools
                                                       ) -> None:
    a = await pools()
    lease = await a.acquire()
    await redis_server.astop()
    lease.release()  # cannot reach Redis: kept
    await a.shared.releases.settle()
    assert a.shared.releases.kept
    with pytest.raises(StateUnavailable):
        await a.acquire()
    await redis_server.astart()
    await until(lambda: not a.shared.releases.kept, timeout=10)
    assert await live_leases(a) == 0


async def test_leases_in_use_count_again_after_redis_restarts_empty(
        redis_server: RedisServer, pools) -> None:
    a = await pools()
    lease = await a.acquire()
    await redis_server.astop()
    await until(lambda: not a.shared.link.ready)
    await redis_server.astart()  # no persistence: every lease is gone
    async with asyncio.timeout(10):
        while not (a.shared.link.ready and await live_leases(a) == 1):
            await asyncio.sleep(0.05)
    lease.release()
    await a.shared.releases.settle()
    assert await live_leases(a) == 0


async def flushall(server: RedisServer) -> None:
    conn = aioredis.from_url(server.url)
    try:
        await conn.flushall()
    finally:
        await conn.aclose()


async def settled(pool: AccountPool) -> bool:
    """Redis has its data generation again and no settling time is left."""
    client, key = pool.shared.link.client, pool.shared.link.key
    return (await client.exists(key("state", "epoch")) == 1
            and await client.exists(key("state", "settling")) == 0)


async def test_leases_and_waiters_survive_redis_losing_its_data_without_an_outage(
        redis_server: RedisServer, pools) -> None:
    """Redis loses its data while the link stays up (FLUSHALL; a restart
    between two pings or a failover to an empty replica look the same) while
    A holds both accounts and B's request waits. A puts its leases back
    (once: nothing counts twice) and B's ticket takes its place again, so a
    new request on B waits too instead of running past the limit, even
    before A heard of the loss; as A's leases end, B's requests are served
    in arrival order (the new one did not take a place ahead of the older
    one put back: places restart from Redis's clock, not from 1)."""
    a, b = await pools(timeout=20), await pools(timeout=20)
    held = [await a.acquire(), await a.acquire()]
    served: list[str] = []

    async def request(name: str) -> None:
        lease = await b.acquire()
        served.append(name)
        try:
            await asyncio.Event().wait()  # holds its lease until cancelled
        finally:
            lease.release()

    everyone = [acc.identifier for acc in ACCOUNTS]
    for _ in range(10):  # earlier requests came and went: places are given on
        ticket = b.shared.ticket()
        assert await b.shared.acquire(everyone, 1, 0, ticket, join=True) is None
        b.shared.leave(ticket)
    first = asyncio.create_task(request("first"))
    await until(lambda: b.waiting == 1 and b.shared.in_line(b._waiters._line[0].ticket))
    await flushall(redis_server)  # the line's counter goes with it
    second = asyncio.create_task(request("second"))
    await until(lambda: b.waiting == 2)
    async with asyncio.timeout(10):
        while not await settled(a):
            await asyncio.sleep(0.02)
    await b.shared.renew("announce")  # whatever was free is handed out by now
    await a.shared.renew("restore")  # putting back twice counts once
    assert await live_leases(a) == 2 and await line(a) == 2
    assert served == [] and b.waiting == 2
    held[0].release()
    await until(lambda: served == ["first"])
    held[1].release()
    await until(lambda: served == ["first", "second"])
    for task in (first, second):
        task.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    await a.shared.releases.settle()
    await b.shared.releases.settle()
    assert await line(a) == 0 and await live_leases(a) == 0


async def test_a_burst_of_answers_telling_of_a_loss_puts_back_what_is_held_once(
        redis_server: RedisServer, pools, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request asking after Redis lost its data hears of the loss: the
    instance puts back what it holds in one call, not one per answer (each
    a call over every lease and ticket it holds)."""
    a = await pools(glob=100)
    held = await a.acquire()
    restores: list[str] = []
    renew_quietly = a.shared._renew_quietly

    async def counted(mode: str) -> None:
        restores.append(mode)
        await renew_quietly(mode)

    monkeypatch.setattr(a.shared, "_renew_quietly", counted)
    await flushall(redis_server)
    everyone = [acc.identifier for acc in ACCOUNTS]
    answers = await asyncio.gather(*(a.shared.acquire(everyone, 1, 100) for _ in range(20)))
    assert answers == [None] * 20  # Redis settles: nothing is handed out yet
    await until(lambda: not a.shared._chores)
    assert restores == ["XX"] and await live_leases(a) == 1
    held.release()
    await a.shared.releases.settle()
    assert await live_leases(a) == 0


async def test_a_ticket_leaving_while_a_renewal_is_on_its_way_stays_out_of_line(
        pools, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewal names the tickets waiting here and puts back any Redis
    lacks; a ticket that left (its request served or gone) after the
    renewal was sent but whose departure reached Redis first was put back,
    unrenewed, at the front of the line, where it held a share of the
    capacity for a lease TTL. The instance now sends it out again."""
    a, b = await pools(glob=1), await pools(glob=1)
    held = await a.acquire()
    ticket = b.shared.ticket()
    everyone = [acc.identifier for acc in ACCOUNTS]
    assert await b.shared.acquire(everyone, 1, 1, ticket, join=True) is None
    script = b.shared._renew

    async def overtaken(keys: list[str], args: list) -> object:
        b.shared.leave(ticket)  # its departure goes out and lands first
        await b.shared.releases.settle()
        return await script(keys=keys, args=args)

    monkeypatch.setattr(b.shared, "_renew", overtaken)
    await b.shared.renew()
    monkeypatch.setattr(b.shared, "_renew", script)
    await b.shared.releases.settle()
    assert await line(a) == 0
    held.release()
    await a.shared.releases.settle()
    assert await live_leases(a) == 0


# -- the stored-response contract, on both backends ---------------------------------


@pytest.fixture(params=["embedded", "redis"])
async def responses(request, open_link) -> AsyncIterator[tuple[object, list]]:
    """(store, ttl box): the store reads its TTL from ``box[0]`` on each access."""
    box = [900.0]
    if request.param == "embedded":
        yield ResponseStore(lambda: box[0]), box
        return
    yield RedisResponses(await open_link(), lambda: box[0]), box


def answer(rid: str, text: str) -> dict:
    return {"id": rid, "output": [{"type": "message", "content": [{"text": text}]}]}


async def test_store_keeps_fetches_and_drops(responses) -> None:
    store, _ = responses
    await store.keep("alice", answer("resp_1", "hi"), [{"role": "user", "content": "q"}])
    entry = await store.fetch("alice", "resp_1")
    assert entry is not None and entry.response["id"] == "resp_1"
    assert entry.history[0] == {"role": "user", "content": "q"}
    assert await store.fetch("bob", "resp_1") is None  # another caller sees nothing
    assert await store.drop("bob", "resp_1") is False
    assert await store.drop("alice", "resp_1") is True
    assert await store.fetch("alice", "resp_1") is None
    assert await store.drop("alice", "resp_1") is False


async def test_store_honours_a_shortened_ttl(responses) -> None:
    store, box = responses
    await store.keep("alice", answer("resp_2", "x"), [])
    assert await store.fetch("alice", "resp_2") is not None
    box[0] = 0.0  # every entry is now older than the TTL
    assert await store.fetch("alice", "resp_2") is None


async def test_each_loss_of_redis_data_is_a_generation_nobody_knew(
        redis_server: RedisServer, pools) -> None:
    """An instance offers one value for the generation a script sets when
    Redis has none, until it sees that value in use: the next loss must
    still be a generation nobody knew, or instances that learnt the last
    one would not put back what they hold."""
    a = await pools(timeout=20)
    seen: list[str] = []
    for _ in range(3):
        lease = await a.acquire()  # a lease script runs, and learns the generation
        lease.release()
        assert a.shared is not None
        epoch = a.shared.epoch
        await until(lambda: epoch.known not in ("", *seen))
        seen.append(epoch.known)
        assert epoch.fresh != epoch.known  # the next loss gets another value
        await flushall(redis_server)
    assert len(set(seen)) == 3
