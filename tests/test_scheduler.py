"""Account pool: limits, FIFO queue, 429, pinning, cancellation, hot reload."""

from __future__ import annotations

import asyncio

import pytest

from ds2proxy.config import AccountConfig, RuntimeSettings
from ds2proxy.errors import InvalidRequest, NoAccountAvailable, RateLimited
from ds2proxy.scheduler import AccountPool


def accounts(n):
    return tuple(AccountConfig(email=f"u{i}@example.com", password="p") for i in range(n))


def pool(n=2, inflight=1, queue=None, glob=0, timeout=30.0):
    return AccountPool(accounts(n), RuntimeSettings(account_max_inflight=inflight,
                                                    account_max_queue=queue,
                                                    global_max_inflight=glob,
                                                    queue_timeout_seconds=timeout))


async def test_round_robin_and_per_account_limit():
    p = pool(2, inflight=1)
    a = await p.acquire()
    b = await p.acquire()
    assert {a.account.identifier, b.account.identifier} == {"u0@example.com", "u1@example.com"}
    assert p.inflight == 2
    a.release()
    a.release()  # idempotent
    assert p.inflight == 1
    c = await p.acquire()
    assert c.account is a.account
    for lease in (b, c):
        lease.release()
    assert p.inflight == 0


async def test_full_queue_answers_429_with_retry_after():
    p = pool(1, inflight=1, queue=1)
    held = await p.acquire()
    waiter = asyncio.create_task(p.acquire())
    await asyncio.wait_for(_until(lambda: p.waiting == 1), 2)
    with pytest.raises(RateLimited) as info:
        await p.acquire()
    assert info.value.status == 429 and info.value.retry_after >= 1
    held.release()
    lease = await asyncio.wait_for(waiter, 2)
    lease.release()
    assert p.inflight == 0 and p.waiting == 0


async def test_zero_queue_means_no_waiting():
    p = pool(1, inflight=1, queue=0)
    held = await p.acquire()
    with pytest.raises(RateLimited):
        await p.acquire()
    held.release()


async def test_waiters_are_served_fifo_under_a_burst():
    p = pool(2, inflight=2, queue=50)
    order: list[int] = []
    peak = 0

    async def worker(i):
        nonlocal peak
        lease = await p.acquire()
        order.append(i)
        peak = max(peak, p.inflight)
        await asyncio.sleep(0)
        lease.release()

    held = [await p.acquire() for _ in range(4)]
    tasks = [asyncio.create_task(worker(i)) for i in range(20)]
    await asyncio.wait_for(_until(lambda: p.waiting == 20), 2)
    for lease in held:
        lease.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == sorted(order)
    assert peak <= 4
    assert p.inflight == 0 and p.waiting == 0


async def test_global_limit_caps_total_inflight():
    p = pool(3, inflight=2, glob=2)
    a, b = await p.acquire(), await p.acquire()
    waiter = asyncio.create_task(p.acquire())
    await asyncio.wait_for(_until(lambda: p.waiting == 1), 2)
    assert p.inflight == 2
    a.release()
    c = await asyncio.wait_for(waiter, 2)
    for lease in (b, c):
        lease.release()


async def test_cancelled_waiter_leaves_the_queue_and_passes_its_turn_on():
    p = pool(1, inflight=1, queue=5)
    held = await p.acquire()
    first = asyncio.create_task(p.acquire())
    second = asyncio.create_task(p.acquire())
    await asyncio.wait_for(_until(lambda: p.waiting == 2), 2)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert p.waiting == 1
    held.release()
    lease = await asyncio.wait_for(second, 2)
    lease.release()
    assert p.inflight == 0


async def test_pinned_account_unknown_is_400_busy_waits():
    p = pool(2, inflight=1)
    with pytest.raises(InvalidRequest) as info:
        await p.acquire(target="nobody@example.com")
    assert info.value.status == 400 and info.value.code == "unknown_account"
    held = await p.acquire(target="u1@example.com")
    assert held.account.identifier == "u1@example.com"
    other = await p.acquire()
    assert other.account.identifier == "u0@example.com"
    other.release()
    waiter = asyncio.create_task(p.acquire(target="u1@example.com"))
    await asyncio.wait_for(_until(lambda: p.waiting == 1), 2)
    held.release()
    again = await asyncio.wait_for(waiter, 2)
    assert again.account.identifier == "u1@example.com"
    again.release()


async def test_hot_reload_raises_limit_for_next_request_without_dropping_leases():
    p = pool(1, inflight=1, queue=0)
    held = await p.acquire()
    with pytest.raises(RateLimited):
        await p.acquire()
    p.configure(accounts(1), RuntimeSettings(account_max_inflight=3, account_max_queue=0))
    extra = await p.acquire()
    assert p.inflight == 2 and not held.released
    held.release()
    extra.release()
    assert p.inflight == 0
    assert p.status()["max_inflight_per_account"] == 3


async def test_no_accounts_is_503():
    p = AccountPool((), RuntimeSettings())
    with pytest.raises(NoAccountAvailable) as info:
        await p.acquire()
    assert info.value.status == 503


async def _until(condition):
    while not condition():
        await asyncio.sleep(0)


async def test_a_request_waiting_for_a_pinned_account_that_is_deleted_gets_a_400():
    p = pool(2, inflight=1)
    held = await p.acquire(target="u1@example.com")
    waiter = asyncio.create_task(p.acquire(target="u1@example.com"))
    await asyncio.wait_for(_until(lambda: p.waiting == 1), 2)
    runtime = RuntimeSettings(account_max_inflight=1)
    p.configure(accounts(1), runtime)  # u1 deleted while its turn runs and one waits
    held.release()
    with pytest.raises(InvalidRequest) as info:
        await asyncio.wait_for(waiter, 2)
    assert info.value.code == "unknown_account"
    # The deleted account was never leased again, and the pool still serves.
    assert [s.identifier for s in p.accounts()] == ["u0@example.com"]
    lease = await p.acquire()
    assert lease.account.identifier == "u0@example.com"
    lease.release()
    assert p.inflight == 0 and p.waiting == 0


async def test_a_waiter_keeps_its_turn_against_a_request_arriving_as_the_slot_frees():
    """A request already on its way when a lease is released used to take
    the slot the release woke the oldest waiter for; that waiter went to the
    back of the queue and could wait out its timeout behind newcomers."""
    p = pool(1, inflight=1, queue=5, timeout=5.0)
    held = await p.acquire()
    first = asyncio.create_task(p.acquire())
    await asyncio.wait_for(_until(lambda: p.waiting == 1), 2)
    newcomer = asyncio.create_task(p.acquire())  # scheduled before the release's wake-up
    held.release()
    lease = await asyncio.wait_for(first, 2)
    await asyncio.wait_for(_until(lambda: p.waiting == 1), 2)
    assert not newcomer.done()
    lease.release()
    (await asyncio.wait_for(newcomer, 2)).release()
    assert p.inflight == 0 and p.waiting == 0


@pytest.mark.parametrize("blocked", ["pinned", "failing_over"])
async def test_a_slot_the_oldest_waiter_cannot_use_goes_to_the_next_one(blocked):
    """The oldest waiter may be pinned to a busy account or failing over
    away from the one just freed: its wake-up was lost, and a request that
    could have used the slot waited out its timeout."""
    p = pool(2, inflight=1, queue=5, timeout=5.0)
    a = await p.acquire(target="u0@example.com")
    b = await p.acquire(target="u1@example.com")
    if blocked == "pinned":
        first = asyncio.create_task(p.acquire(target="u0@example.com"))
    else:
        first = asyncio.create_task(p.acquire(exclude=frozenset({"u1@example.com"})))
    await asyncio.wait_for(_until(lambda: p.waiting == 1), 2)
    second = asyncio.create_task(p.acquire())
    await asyncio.wait_for(_until(lambda: p.waiting == 2), 2)
    b.release()
    lease = await asyncio.wait_for(second, 2)
    assert lease.account.identifier == "u1@example.com" and not first.done()
    a.release()
    (await asyncio.wait_for(first, 2)).release()
    lease.release()
    assert p.inflight == 0 and p.waiting == 0
