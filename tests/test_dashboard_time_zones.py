"""Times on the dashboard read the same in every zone: the server-rendered
request log, the overview's recent errors and their live updates all print
UTC, named so, like the charts' bucket labels, when the server and the
browser are each in a different zone than UTC (and than each other)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import aiohttp
import pytest
from browser_util import LiveServer, find, text_of, wait

from conftest import TEST_KEY
from test_dashboard_browser import driver, live  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(120)


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@pytest.fixture
def server_in_new_york(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def _unknown_model(live: LiveServer) -> None:
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{live.url}/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {TEST_KEY}"}) as resp:
            assert resp.status == 400


def test_times_are_utc_whatever_zone_the_server_and_browser_are_in(
        driver, live, server_in_new_york):  # noqa: F811
    from selenium.webdriver.common.by import By

    assert datetime.fromtimestamp(0).hour != 0  # the server's local zone is not UTC
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    try:
        live.run(_unknown_model(live))
        error_time = live.on_loop(lambda: live.core.monitor.recent_errors[0]["time"])
        live.open_page(driver, "/admin/ui/usage?status=400")
        [row] = driver.find_elements(By.CSS_SELECTOR, "#usage-table tbody tr[data-request-id]")
        logged = row.find_element(By.CSS_SELECTOR, "td").text
        assert logged.endswith(" UTC") and abs(
            datetime.strptime(logged, "%Y-%m-%d %H:%M:%S UTC").replace(
                tzinfo=timezone.utc).timestamp() - error_time) < 2

        live.open_page(driver, "/admin/")
        wait(driver, lambda d: find(d, "#live-badge").is_displayed())  # the page's poll answered
        shown = text_of(driver, "#overview-errors li .small.muted")
        assert shown == utc(error_time)
        assert driver.execute_script("return new Date(0).getHours()") == 9  # Tokyo, really
    finally:
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})
