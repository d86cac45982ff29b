"""Account health in the pool: cooldowns with backoff and jitter, the
half-open trial, login backoff, operator overrides, the verdicts when no
account can serve, pacing, and the state store's round trip."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from clock_util import Clock
from ds2proxy.config import AccountConfig, ConfigError, RuntimeSettings, parse_config
from ds2proxy.errors import (
    ContentFiltered,
    InvalidRequest,
    LoginFailed,
    NoAccountAvailable,
    OutputInvalid,
    PowError,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
)
from ds2proxy.health import (
    COOLING,
    DISABLED,
    HEALTHY,
    LOGIN_FAILING,
    Failure,
    HealthSettings,
    HealthTracker,
    Pacer,
    PacingSettings,
    classify,
    parse_health,
)
from ds2proxy.health.settings import MAX_COOLDOWN
from ds2proxy.scheduler import AccountPool
from ds2proxy.state.sqlite import SQLiteStore


def settings(jitter: float = 0.0, **overrides: dict) -> HealthSettings:
    return parse_health({"health": {"jitter": jitter, **overrides}})


def tracker(clock: Clock, **kw) -> HealthTracker:
    return HealthTracker(settings(**kw), clock=clock)


def accounts(n: int) -> tuple[AccountConfig, ...]:
    return tuple(AccountConfig(email=f"u{i}@example.com", password="p") for i in range(n))


def pool(n: int, health: HealthTracker, inflight: int = 1, timeout: float = 30.0,
         pacer: Pacer | None = None) -> AccountPool:
    runtime = RuntimeSettings(account_max_inflight=inflight, queue_timeout_seconds=timeout)
    return AccountPool(accounts(n), runtime, health, pacer)


RATE = Failure("rate_limited", "upstream rate limit")


# -- classification --------------------------------------------------------------


@pytest.mark.parametrize("exc, kind", [
    (UpstreamRateLimited("upstream rate limit", retry_after=7), "rate_limited"),
    (RateLimited("empty", code="upstream_empty_output"), "rate_limited"),
    (UpstreamAuthError("x", detail="token refused again right after a fresh login"), "auth"),
    (UpstreamError("upstream answered HTTP 502"), "upstream"),
    (InvalidRequest("too long", code="context_length_exceeded"), None),
    (ContentFiltered("filtered"), None),
    (OutputInvalid("not json"), None),
    (RateLimited("all accounts are busy and the wait queue is full"), None),
    (UpstreamError("client too old", retryable=False), None),
    (PowError("PoW challenge expired while solving", retryable=True), "upstream"),
    # Every account gets the same unknown algorithm: none is to blame.
    (PowError("unsupported PoW algorithm 'DeepSeekHashV2'", retryable=False), None),
    (LoginFailed("x", detail="login refused"), None),  # the keeper reports those itself
])
def test_only_account_faults_are_classified(exc, kind):
    failure = classify(exc)
    assert (failure.kind if failure else None) == kind


def test_upstream_retry_after_is_kept():
    failure = classify(UpstreamRateLimited("upstream rate limit", retry_after=7))
    assert failure is not None and failure.retry_after == 7


# -- backoff, half-open, reset ------------------------------------------------------


def test_backoff_doubles_per_strike_up_to_the_cap_and_success_resets_it():
    clock = Clock(1_000_000.0)
    t = tracker(clock, cooldown={"rate_limited": {"base_seconds": 10, "max_seconds": 35}})
    lengths = []
    for _ in range(4):
        t.failed("a", RATE)
        rec = t.record("a")
        lengths.append(rec.until - rec.since)
    assert lengths == [10, 20, 35, 35]
    assert t.state("a") == COOLING and not t.eligible("a")
    clock.now = t.record("a").until
    assert t.eligible("a")
    t.succeeded("a")
    assert t.state("a") == HEALTHY and t.record("a").strikes == {}
    t.failed("a", RATE)
    assert t.record("a").until - t.record("a").since == 10


def test_jitter_stays_within_its_fraction():
    clock = Clock(1_000_000.0)
    t = HealthTracker(settings(jitter=0.25), clock=clock, rng=random.Random(4))
    seen = set()
    for _ in range(30):
        t.reset("a")
        t.failed("a", RATE)
        length = t.record("a").until - t.record("a").since
        assert 45 <= length <= 75
        seen.add(round(length, 3))
    assert len(seen) > 1


def test_upstream_retry_after_lengthens_a_short_cooldown():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    t.failed("a", Failure("upstream", "HTTP 502", retry_after=120))
    assert t.record("a").until - clock.now == 120


async def test_half_open_lets_exactly_one_trial_through():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    p = pool(1, t, inflight=4)
    t.failed("u0@example.com", RATE)
    with pytest.raises(RateLimited) as info:
        await p.acquire()
    assert info.value.code == "accounts_cooling_down" and info.value.retry_after == 60
    clock.now += 60
    trial = await p.acquire()
    assert t.in_trial("u0@example.com")
    # Others wait for the trial's verdict instead of piling on.
    waiter = asyncio.create_task(p.acquire())
    await _until(lambda: p.waiting == 1)
    assert p.inflight == 1
    t.succeeded("u0@example.com")
    trial.release()
    second = await asyncio.wait_for(waiter, 2)
    assert t.state("u0@example.com") == HEALTHY
    second.release()


async def test_a_failed_trial_cools_again_longer_and_waiters_get_429():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    p = pool(1, t, inflight=4)
    t.failed("u0@example.com", RATE)
    clock.now += 60
    trial = await p.acquire()
    waiter = asyncio.create_task(p.acquire())
    await _until(lambda: p.waiting == 1)
    t.failed("u0@example.com", RATE)
    trial.release()
    with pytest.raises(RateLimited) as info:
        await asyncio.wait_for(waiter, 2)
    assert info.value.retry_after == 120


async def test_traffic_moves_to_healthy_accounts_and_queued_requests_survive_a_cooldown():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    p = pool(2, t, inflight=1)
    a = await p.acquire()
    b = await p.acquire()
    waiter = asyncio.create_task(p.acquire())
    await _until(lambda: p.waiting == 1)
    # a's account cools down while a request is queued: it keeps waiting for b.
    t.failed(a.account.identifier, RATE)
    a.release()
    await _until(lambda: p.waiting == 1)
    assert not waiter.done()
    b.release()
    c = await asyncio.wait_for(waiter, 2)
    assert c.account is b.account
    c.release()


async def test_operator_disable_enable_and_reset_apply_at_once():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    p = pool(2, t)
    t.disable("u0@example.com")
    for _ in range(3):
        lease = await p.acquire()
        assert lease.account.identifier == "u1@example.com"
        lease.release()
    t.disable("u1@example.com")
    with pytest.raises(NoAccountAvailable) as info:
        await p.acquire()
    assert info.value.status == 503
    t.reset("u1@example.com")
    t.failed("u1@example.com", RATE)
    with pytest.raises(RateLimited):
        await p.acquire()
    t.reset("u1@example.com")
    lease = await p.acquire()
    assert lease.account.identifier == "u1@example.com"
    lease.release()


async def test_a_pinned_cooling_account_is_a_429_with_its_recovery():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    p = pool(2, t)
    t.failed("u1@example.com", RATE)
    clock.now += 15
    with pytest.raises(RateLimited) as info:
        await p.acquire(target="u1@example.com")
    assert info.value.retry_after == 45


async def test_every_account_failing_to_log_in_is_a_502_with_retry_after():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    p = pool(2, t)
    t.login_failed("u0@example.com", "login refused: wrong password")
    t.login_failed("u1@example.com", "login refused: wrong password")
    assert not t.login_allowed("u0@example.com")
    with pytest.raises(LoginFailed) as info:
        await p.acquire()
    assert info.value.status == 502 and info.value.retry_after == 60
    clock.now += 60
    assert t.login_allowed("u0@example.com")
    t.login_succeeded("u0@example.com")
    assert t.state("u0@example.com") == HEALTHY
    assert t.state("u1@example.com") == LOGIN_FAILING


def test_a_login_does_not_end_a_cooldown_of_another_kind():
    t = tracker(Clock(1_000_000.0))
    t.failed("a", RATE)
    t.login_succeeded("a")
    assert t.state("a") == COOLING


def test_a_login_between_rate_limits_keeps_their_backoff_growing():
    """An account failing differently each time: rate limited twice, its
    trial then found its token expired and the login failed; the next login
    worked, which cleared every strike, so the next rate limit cooled it for
    the first 60 s again instead of 240 s."""
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    for _ in range(2):
        t.failed("a", RATE)
        clock.now = t.record("a").until
    t.login_failed("a", "token expired, login refused")
    clock.now = t.record("a").until
    t.login_succeeded("a")
    assert t.state("a") == HEALTHY and t.record("a").strikes == {"rate_limited": 2}
    t.failed("a", RATE)
    assert t.record("a").until - clock.now == 240
    t.succeeded("a")  # a request that worked does end the backoff
    assert t.record("a").strikes == {}


def test_lowering_the_cap_shortens_running_cooldowns():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    t.failed("a", Failure("auth", "banned"))
    assert t.record("a").until - clock.now == 600
    t.configure(settings(cooldown={"auth": {"base_seconds": 5, "max_seconds": 30}}))
    assert t.record("a").until - clock.now == 30


async def test_requests_failing_in_one_burst_count_one_strike():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    p = pool(1, t, inflight=3)
    burst = [await p.acquire() for _ in range(3)]
    clock.now += 1
    for lease in burst:  # three requests in flight when the upstream said 429
        t.failed(lease.account.identifier, RATE, started=lease.granted_at)
        lease.release()
    record = t.record("u0@example.com")
    assert record.strikes == {"rate_limited": 1} and record.until - record.since == 60
    # One granted later (the trial) failing is a new failure: the backoff doubles.
    clock.now = record.until
    trial = await p.acquire()
    t.failed("u0@example.com", RATE, started=trial.granted_at)
    trial.release()
    record = t.record("u0@example.com")
    assert record.strikes == {"rate_limited": 2} and record.until - record.since == 120


def test_a_shorter_failure_of_another_kind_never_cuts_a_running_cooldown():
    # An account that fails differently each time: a request already running
    # when the upstream asked for an hour's rest ends with a 502 (10 s of
    # backoff); the hour stands, and the 502 still counts as a strike.
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    t.failed("a", Failure("rate_limited", "upstream rate limit", retry_after=3600))
    clock.now += 1
    t.failed("a", Failure("upstream", "upstream answered HTTP 502"), started=clock.now - 2)
    record = t.record("a")
    assert record.until - clock.now == 3599 and record.kind == "rate_limited"
    assert record.strikes == {"rate_limited": 1, "upstream": 1}
    assert record.last_failure_reason == "upstream answered HTTP 502"
    # A longer one of another kind does take over.
    t.failed("a", Failure("upstream", "upstream answered HTTP 503", retry_after=7200))
    record = t.record("a")
    assert record.until - clock.now == 7200 and record.kind == "upstream"
    assert record.reason == "upstream answered HTTP 503"


@pytest.mark.parametrize("data", [
    {"state": "cooling_down", "until": 1e18, "since": "x", "strikes": ["rate_limited"],
     "counts": {"i": "3"}, "requests_today": -4, "reason": 5, "last_failure": float("nan")},
    {"state": "cooling_down", "until": "tomorrow", "strikes": {"rate_limited": True, "x": 2},
     "counts": [1, 2], "day": 20261205, "changed": float("inf")},
    "not a record",
])
def test_a_malformed_saved_record_reads_as_defaults_and_the_account_goes_on(data):
    """A record from the state file or another instance was trusted as
    written: a list of strikes failed the account's next failure with an
    AttributeError, and a cooldown far past the 30-day cap showed as ages."""
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    t.adopt("a", data)
    record = t.record("a")
    assert record.until <= time.time() + MAX_COOLDOWN
    assert all(isinstance(n, int) and n > 0 for n in [*record.strikes.values(),
                                                      *record.counts.values()])
    assert isinstance(record.reason, str) and isinstance(record.day, str)
    assert record.requests_today >= 0 and record.since >= 0 and record.changed < float("inf")
    t.failed("a", Failure("upstream", "upstream answered HTTP 502"))
    t.succeeded("a")
    assert t.view("a")["state"] == "healthy"


def test_a_config_write_leaves_a_cooldown_the_upstream_asked_for():
    # Every config write (a login saving its token) re-applies the health
    # settings: unchanged caps must not cut a longer Retry-After short.
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    t.failed("a", Failure("rate_limited", "upstream rate limit", retry_after=7200))
    t.configure(settings())
    assert t.record("a").until - clock.now == 7200
    t.configure(settings(cooldown={"rate_limited": {"max_seconds": 3600}}))  # raised
    assert t.record("a").until - clock.now == 7200
    t.configure(settings(cooldown={"rate_limited": {"max_seconds": 900}}))  # lowered
    assert t.record("a").until - clock.now == 900


def test_counts_and_view():
    clock = Clock(1_000_000.0)
    t = tracker(clock)
    t.failed("a", RATE)
    t.login_failed("b", "login refused")
    t.disable("c")
    t.granted("d")
    assert t.counts(["a", "b", "c", "d"]) == {HEALTHY: 1, COOLING: 1, LOGIN_FAILING: 1,
                                              DISABLED: 1}
    view = t.view("a")
    assert view["state"] == COOLING and view["reason"] == "upstream rate limit"
    assert view["cooldown_seconds_left"] == 60
    assert t.view("d")["requests_today"] == 1


def test_settings_are_validated_with_the_field_named():
    with pytest.raises(ConfigError, match="health.cooldown.rate_limited.max_seconds"):
        parse_config({"health": {"cooldown": {"rate_limited": {"max_seconds": 0}}}})
    # A cap below the base means the base: each field is valid on its own.
    low = parse_config({"health": {"cooldown": {"rate_limited": {"base_seconds": 50,
                                                                 "max_seconds": 10}}}})
    assert [low.health.cooldown_for("rate_limited", n) for n in (1, 3)] == [50, 50]
    with pytest.raises(ConfigError, match="health.pacing.max_per_hour"):
        parse_config({"health": {"pacing": {"max_per_hour": -1}}})
    d = parse_config({}).health
    assert d.enabled and d.jitter == 0.2 and not d.pacing.enabled


# -- pacing ------------------------------------------------------------------------


async def test_pacing_spaces_requests_and_caps_the_hour_then_spreads_lru():
    clock = Clock(0.0)
    pacer = Pacer(PacingSettings(min_interval_seconds=10, max_per_hour=2), clock=clock)
    t = tracker(Clock(1_000_000.0))
    p = pool(2, t, inflight=4, timeout=0.05, pacer=pacer)
    first = await p.acquire()
    second = await p.acquire()
    # LRU among the eligible: the second request goes to the idle account.
    assert first.account is not second.account
    with pytest.raises(RateLimited) as info:
        await p.acquire()  # both accounts inside their minimum interval
    assert info.value.retry_after == 10
    clock.now = 10
    third, fourth = await p.acquire(), await p.acquire()
    clock.now = 20
    with pytest.raises(RateLimited) as info:
        await p.acquire()  # both at their hourly cap
    assert info.value.retry_after == 3580
    for lease in (first, second, third, fourth):
        lease.release()


async def test_a_paced_waiter_is_served_when_the_gap_ends():
    pacer = Pacer(PacingSettings(min_interval_seconds=0.05))
    p = pool(1, tracker(Clock(1_000_000.0)), inflight=4, timeout=5, pacer=pacer)
    first = await p.acquire()
    second = await asyncio.wait_for(p.acquire(), 2)
    assert p.inflight == 2
    first.release()
    second.release()


async def test_a_shorter_interval_applies_to_the_gaps_already_running():
    """An interval lowered from an hour to a second left every account that
    had started a request waiting out the hour (its waiters got 429s)."""
    clock = Clock(0.0)
    pacer = Pacer(PacingSettings(min_interval_seconds=3600), clock=clock)
    health = tracker(Clock(1_000_000.0))
    p = pool(1, health, inflight=4, timeout=0.05, pacer=pacer)
    (await p.acquire()).release()
    clock.now = 60
    with pytest.raises(RateLimited) as info:
        await p.acquire()
    assert info.value.retry_after == 3540
    p.configure_health(settings(pacing={"min_interval_seconds": 1, "jitter_seconds": 0.5}))
    assert pacer.ready_at("u0@example.com") == 1.5
    (await p.acquire()).release()
    assert pacer.ready_at("u0@example.com") - clock.now <= 1.5
    # A longer interval does not stretch a gap already drawn.
    p.configure_health(settings(pacing={"min_interval_seconds": 600}))
    assert pacer.ready_at("u0@example.com") - clock.now <= 1.5


def test_jitter_only_adds_to_the_interval():
    clock = Clock(0.0)
    pacer = Pacer(PacingSettings(min_interval_seconds=1, jitter_seconds=0.5), clock=clock,
                  rng=random.Random(1))
    for _ in range(20):
        pacer.started("a")
        gap = pacer.ready_at("a") - clock.now
        assert 1 <= gap <= 1.5
        clock.now += gap


# -- state store -----------------------------------------------------------------------


async def test_sqlite_store_round_trip_keeps_cooling_accounts_cooling(tmp_path):
    path = tmp_path / "state.sqlite"
    clock = Clock(1_000_000.0)
    store = SQLiteStore(path)
    t = HealthTracker(settings(), store, clock=clock)
    t.failed("a", RATE)
    t.disable("b")
    t.granted("c")
    t.forget_except(["a", "b"])
    await store.close()
    assert path.stat().st_mode & 0o777 == 0o600

    again = SQLiteStore(path)
    fresh = HealthTracker(settings(), again, clock=clock)
    fresh.load(await again.load("account_health"))
    assert fresh.state("a") == COOLING and fresh.view("a")["cooldown_seconds_left"] == 60
    assert fresh.state("b") == DISABLED
    assert "c" not in (await again.load("account_health"))
    await again.close()


async def test_verdicts_on_a_deleted_account_never_reach_the_state_file(tmp_path):
    store = SQLiteStore(tmp_path / "state.sqlite")
    t = HealthTracker(settings(), store, clock=Clock(1_000_000.0))
    t.forget_except(["a", "b"])
    t.failed("a", RATE)
    t.forget_except(["b"])  # "a" deleted while a request on it still runs
    t.failed("a", RATE)
    t.login_failed("a", "refused")
    t.succeeded("a")
    await store.close()
    again = SQLiteStore(tmp_path / "state.sqlite")
    assert "a" not in await again.load("account_health")
    await again.close()
    t.forget_except(["a", "b"])  # added back: a fresh start
    assert t.state("a") == HEALTHY and t.view("a")["last_failure"] is None


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0)


async def test_an_unusable_state_file_is_logged_and_the_tracker_goes_on(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    store = SQLiteStore(blocker / "state.sqlite")
    assert await store.load("account_health") == {}
    t = HealthTracker(settings(), store, clock=Clock(1_000_000.0))
    t.failed("a", RATE)
    await store.close()
    assert t.state("a") == COOLING
    assert [r.message for r in caplog.records].count(
        f"state file {blocker / 'state.sqlite'} cannot be used "
        "(unable to open database file); state is kept in memory only") == 1
