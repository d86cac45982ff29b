"""Account health shared between instances: a stale copy from a peer (its
write raced this instance's newer transition) never undoes a cooldown."""

from __future__ import annotations

from test_account_health import RATE, Clock, settings

from ds2proxy.health import COOLING, DISABLED, HEALTHY, HealthTracker
from ds2proxy.state import MemoryStore

NS = "account_health"


def pair(clock: Clock) -> tuple[HealthTracker, HealthTracker, MemoryStore, MemoryStore]:
    store_a, store_b = MemoryStore(), MemoryStore()
    return (HealthTracker(settings(), store_a, clock=clock),
            HealthTracker(settings(), store_b, clock=clock), store_a, store_b)


async def test_a_stale_peer_copy_does_not_undo_a_cooldown() -> None:
    clock = Clock()
    a, b, store_a, store_b = pair(clock)
    b.granted("x")  # B counts a request: its copy says healthy
    stale = (await store_b.load(NS))["x"]
    clock.now += 1
    a.failed("x", RATE)  # A cools x down, then B's older write arrives
    a.adopt("x", stale)
    assert a.state("x") == COOLING
    written = (await store_a.load(NS))["x"]  # the newer state is written back
    assert written["state"] == COOLING and written["requests_today"] == 1
    b.adopt("x", written)
    assert b.state("x") == COOLING and not b.eligible("x")


async def test_a_newer_peer_change_is_taken_and_wakes_the_pool() -> None:
    clock = Clock()
    a, b, _, store_b = pair(clock)
    woken = []
    a.on_change(lambda: woken.append(1))
    a.failed("x", RATE)
    clock.now += 1
    b.disable("x")
    a.adopt("x", (await store_b.load(NS))["x"])
    assert a.state("x") == DISABLED and woken == [1, 1]
    clock.now += 1
    b.reset("x")
    a.adopt("x", (await store_b.load(NS))["x"])
    assert a.state("x") == HEALTHY and len(woken) == 3
    a.adopt("x", None)  # removed from the config elsewhere
    assert a.view("x")["state"] == HEALTHY


async def test_reloading_an_older_shared_copy_keeps_a_newer_local_change() -> None:
    """When Redis answers again the shared records are loaded again; a
    cooldown that started here during the outage (its write still queued) is
    newer than Redis's copy and must survive the reload."""
    clock = Clock()
    a, b, store_a, store_b = pair(clock)
    b.granted("x")
    shared = await store_b.load(NS)  # what Redis still holds
    clock.now += 1
    a.failed("x", RATE)
    a.load(shared)
    assert a.state("x") == COOLING and not a.eligible("x")
    assert (await store_a.load(NS))["x"]["state"] == COOLING
    fresh = HealthTracker(settings(), MemoryStore(), clock=clock)
    fresh.load(await store_a.load(NS))  # a start-up load takes every record
    assert fresh.state("x") == COOLING
