"""Provider cooldowns (Retry-After first, else the configured backoff, a
half-open trial after) and the usage store's served_by column."""

from __future__ import annotations

import sqlite3

from clock_util import Clock
from ds2proxy.errors import InvalidRequest, UpstreamError, UpstreamRateLimited
from ds2proxy.health import HealthSettings
from ds2proxy.providers.client import ProviderBusy
from ds2proxy.providers.health import ProviderHealth
from ds2proxy.state.usage import ROW_FIELDS, SQLiteUsage


def tracker() -> tuple[ProviderHealth, Clock]:
    clock = Clock()
    return ProviderHealth(HealthSettings(jitter=0.0), clock=clock), clock


def test_retry_after_is_the_cooldown_then_one_trial_decides():
    health, clock = tracker()
    health.failed("p", UpstreamRateLimited("429", retry_after=7))
    assert not health.available("p") and health.seconds_left("p") == 7
    clock.now += 7
    assert health.available("p")  # the trial
    assert not health.available("p")  # only one at a time
    health.succeeded("p")
    assert health.available("p") and health.view("p")["state"] == "healthy"


def test_without_retry_after_the_backoff_doubles():
    health, clock = tracker()
    settings = HealthSettings()
    for strikes in (1, 2):
        health.failed("p", UpstreamError("5xx"))
        assert health.seconds_left("p") == settings.cooldown_for("upstream", strikes)
        clock.now += health.seconds_left("p")
        assert health.available("p")


def test_a_trial_ended_by_a_request_error_lets_the_next_one_try():
    health, clock = tracker()
    health.failed("p", UpstreamError("5xx"))
    clock.now += health.seconds_left("p")
    assert health.available("p")
    health.failed("p", InvalidRequest("the request's own fault"))
    assert health.available("p")


def test_request_faults_and_a_full_provider_cool_nothing():
    health, _ = tracker()
    health.failed("p", InvalidRequest("bad"))
    health.failed("p", ProviderBusy("full", retry_after=1))
    assert health.available("p") and health.seconds_left("p") == 0


async def test_an_older_usage_store_gains_the_served_by_column(tmp_path):
    path = tmp_path / "old.usage.db"
    with sqlite3.connect(path) as db:
        columns = ", ".join(f"{name} TEXT" for name in ROW_FIELDS if name != "served_by")
        db.execute(f"CREATE TABLE requests (id INTEGER PRIMARY KEY, {columns})")
    store = SQLiteUsage(str(path))
    await store.close()
    with sqlite3.connect(path) as db:
        names = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    assert "served_by" in names
