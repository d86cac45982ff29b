"""Account health in headless Chromium: an account whose upstream starts
refusing shows its state and the reason on the accounts page, and the
operator's Reset brings it back at once; Disable and Enable work the same
way. Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from browser_util import LiveServer, chromium_or_skip, find, screenshot, text_of, wait
from test_dashboard_browser import driver  # noqa: F401  (fixture)
from conftest import ACCOUNTS, TEST_KEY

from ds2proxy.auth import TARGET_ACCOUNT_HEADER
from ds2proxy.testing import HttpFault, Misbehaviour

pytestmark = pytest.mark.timeout(90)

ALICE = ACCOUNTS[0][0]
ROW = f'tr[data-account="{ALICE}"]'


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    chromium_or_skip()
    server = LiveServer().start()
    try:
        yield server
    finally:
        server.stop()


async def _chat_on(live: LiveServer, account: str) -> int:
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hello"}]}
    headers = {"Authorization": f"Bearer {TEST_KEY}", TARGET_ACCOUNT_HEADER: account}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{live.url}/v1/chat/completions", json=body,
                             headers=headers) as resp:
            return resp.status


def click_in_row(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    buttons = find(driver, ROW).find_elements(By.CSS_SELECTOR, "form button")
    next(b for b in buttons if b.text == label).click()


def shows(css: str, wanted: str):
    """A wait condition on an element's text that survives the page reloading
    under it (a form posts, then redirects back)."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )

    def check(driver) -> bool:
        try:
            return wanted in text_of(driver, css)
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    return check


def test_a_failing_account_shows_its_state_and_reset_brings_it_back(driver, live):
    live.on_loop(lambda: live.fake.misbehave(ALICE, Misbehaviour(completion=HttpFault(429))))
    assert live.run(_chat_on(live, ALICE)) == 429
    live.open_page(driver, "/admin/ui/accounts")
    assert "cooling down" in text_of(driver, f"{ROW} .health-state")
    assert "rate limit" in text_of(driver, f"{ROW} .health-reason")
    assert "left" in text_of(driver, f"{ROW} .cooldown-left")
    screenshot(driver, "account-cooling")

    live.on_loop(live.fake.behave)
    click_in_row(driver, "Reset")
    wait(driver, shows("#flash", f"Account {ALICE} is now healthy"))
    assert text_of(driver, f"{ROW} .health-state") == "healthy"
    assert live.on_loop(lambda: live.core.pool.health.state(ALICE)) == "healthy"
    assert live.run(_chat_on(live, ALICE)) == 200

    click_in_row(driver, "Disable")
    wait(driver, shows("#flash", f"Account {ALICE} is now disabled"))
    assert text_of(driver, f"{ROW} .health-state") == "disabled"
    assert live.run(_chat_on(live, ALICE)) == 503
    click_in_row(driver, "Enable")
    wait(driver, shows("#flash", f"Account {ALICE} is now healthy"))
    assert text_of(driver, f"{ROW} .health-state") == "healthy"
    screenshot(driver, "account-healthy")

    live.open_page(driver, "/admin/")
    wait(driver, lambda d: find(d, "#live-badge").is_displayed())
    assert "healthy" in text_of(driver, "#accounts-by-state")
