"""The overview reads its counts off the busy and unhealthy accounts the pool
and its health tracker keep listed, instead of building every account's
status per poll: after every kind of change (leases, releases, cooldowns
and their expiry, logins failing, disable/reset, pacing, accounts added and
removed while leased, failed account tests) the numbers and the rows shown
are exactly what a walk of every account gives. Figures: bench/overview_bench.py."""

from __future__ import annotations

import random

import aiohttp
import pytest

from admin_util import admin_for
from clock_util import Clock
from conftest import Proxy
from ds2proxy.account_state import AccountState, Lease
from ds2proxy.admin.pool_counts import queue_counts, worth_showing
from ds2proxy.config import AccountConfig, RuntimeSettings
from ds2proxy.errors import ProxyError
from ds2proxy.health import HEALTHY, Failure, HealthTracker, Pacer, PacingSettings
from ds2proxy.scheduler import AccountPool

LISTS = ("available_accounts", "in_use_accounts")
ROWS = 6


def shown_by_walking(pool: AccountPool, failed_tests: dict[str, None], limit: int
                     ) -> list[str]:
    """The rows a look at every account picks: busy, unhealthy, or failing
    its last account test first (a refused login is an unhealthy state)."""
    states = pool.accounts()

    def quiet(s: AccountState) -> bool:
        return (not s.inflight and pool.health.state(s.identifier) == HEALTHY
                and not (s.last_error and s.identifier in failed_tests))

    loud = [s for s in states if not quiet(s)][:limit]
    rest = [s for s in states if s not in loud][:limit - len(loud)]
    return [s.identifier for s in loud + rest]


class World:
    def __init__(self, seed: int, pacing: PacingSettings) -> None:
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.next_id = 0
        self.configs = tuple(self._new() for _ in range(24))
        self.runtime = RuntimeSettings(account_max_inflight=2, global_max_inflight=30,
                                       account_max_queue=0)
        self.pool = AccountPool(self.configs, self.runtime,
                                HealthTracker(clock=self.clock, rng=random.Random(seed)),
                                Pacer(pacing, clock=self.clock, rng=random.Random(seed)))
        self.leases: list[Lease] = []
        self.failed_tests: dict[str, None] = {}

    def _new(self) -> AccountConfig:
        self.next_id += 1
        return AccountConfig(email=f"a{self.next_id}@example.com", password="pw",
                             token=f"tok-{self.next_id}")

    def some(self) -> str:
        return self.rng.choice(self.pool.accounts()).identifier

    async def step(self) -> None:
        rng, health = self.rng, self.pool.health
        kind = rng.choice(["lease", "lease", "lease", "release", "release", "fail", "login",
                           "succeed", "disable", "reset", "time", "test", "configure"])
        if kind == "lease":
            try:
                target = self.some() if rng.random() < 0.3 else None
                self.leases.append(await self.pool.acquire(target=target))
            except ProxyError:
                pass  # nothing usable now: what the counts must also say
        elif kind == "release" and self.leases:
            self.leases.pop(rng.randrange(len(self.leases))).release()
        elif kind == "fail":
            health.failed(self.some(), Failure(rng.choice(["rate_limited", "upstream"]), "x"))
        elif kind == "login":
            state = self.pool.find(self.some())
            assert state is not None
            state.last_error = "login refused"  # as the credentials keeper does
            health.login_failed(state.identifier, "login refused")
        elif kind == "succeed":
            health.succeeded(self.some())
        elif kind == "disable":
            health.disable(self.some())
        elif kind == "reset":
            health.reset(self.some())
        elif kind == "time":
            self.clock.now += rng.choice([1, 5, 30, 400, 4000])
        elif kind == "test":  # an account test from the admin: its error is kept
            state = self.pool.find(self.some())
            assert state is not None
            ok = rng.random() < 0.5
            state.last_error = "" if ok else "test failed"
            if ok:
                self.failed_tests.pop(state.identifier, None)
            else:
                self.failed_tests[state.identifier] = None
        elif kind == "configure":
            configs = list(self.configs)
            if rng.random() < 0.5 and len(configs) > 4:
                del configs[rng.randrange(len(configs))]  # maybe one holding a lease
            else:
                configs.insert(rng.randrange(len(configs) + 1), self._new())
            self.configs = tuple(configs)
            self.pool.configure(self.configs, self.runtime)

    def check(self) -> None:
        walked = {k: v for k, v in self.pool.status().items() if k not in LISTS}
        assert queue_counts(self.pool) == walked
        order = {c.identifier: i for i, c in enumerate(self.configs)}
        shown = worth_showing(self.pool, list(self.failed_tests), order, ROWS)
        assert [s.identifier for s in shown] == shown_by_walking(
            self.pool, self.failed_tests, ROWS)


@pytest.mark.parametrize("pacing", [PacingSettings(),
                                    PacingSettings(min_interval_seconds=5, max_per_hour=3)],
                         ids=["unpaced", "paced"])
@pytest.mark.parametrize("seed", range(4))
async def test_counts_kept_as_accounts_change_match_a_walk_of_every_account(seed, pacing):
    world = World(seed, pacing)
    world.check()
    for _ in range(600):
        await world.step()
        world.check()
    assert world.leases, "the run never held a lease"
    for lease in world.leases:
        lease.release()
    world.check()
    assert queue_counts(world.pool)["in_use"] == 0


async def test_the_overview_follows_a_disabled_account_over_the_wire(proxy: Proxy):
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        before = (await admin.ok("GET", "/admin/overview"))["queue"]
        assert before["available"] == 2 and before["by_state"]["healthy"] == 2
        assert "available_accounts" not in before  # /admin/queue/status lists them
        await admin.ok("POST", "/admin/accounts/bob@example.com/disable")
        after = await admin.ok("GET", "/admin/overview")
        assert after["queue"]["available"] == 1 and after["queue"]["by_state"]["disabled"] == 1
        assert after["accounts"][0]["identifier"] == "bob@example.com"
        await admin.ok("POST", "/admin/accounts/bob@example.com/enable")
        again = (await admin.ok("GET", "/admin/overview"))["queue"]
        assert again["available"] == 2 and again["by_state"]["disabled"] == 0
