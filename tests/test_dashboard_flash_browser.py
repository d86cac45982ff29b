"""A dashboard message belongs to the action that caused it: in Chromium, an
error banner goes away at the next action on the page (also one run in
place by JavaScript) and never comes back on a later page."""

from __future__ import annotations

import pytest
from browser_util import find, wait
from test_dashboard_browser import driver, live  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(90)


def flash_text(driver) -> str:  # noqa: F811  (the fixture's name, a plain argument here)
    shown = driver.execute_script("return document.getElementById('flash')?.textContent || ''")
    return shown.strip()


def test_an_error_banner_is_gone_after_the_next_action(driver, live):  # noqa: F811
    live.open_page(driver, "/admin/ui/accounts")
    find(driver, "#login").send_keys("erin@example.com")  # no password: refused
    find(driver, "#add-account-submit").click()
    wait(driver, lambda d: "password" in flash_text(d))
    row = 'tr[data-account="alice@example.com"]'
    find(driver, f"{row} form[data-js='test-one'] button").click()
    wait(driver, lambda d: "OK" in find(d, f"{row} .test-result").text)
    assert flash_text(driver) == ""
    live.open_page(driver, "/admin/ui/accounts")
    assert flash_text(driver) == ""
