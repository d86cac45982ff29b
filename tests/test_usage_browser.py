"""The keys and usage pages in a real browser: create a key (its secret shown
once, copied with the button), see its request in the log, on the overview
chart and on the key's own page. Screenshots go to test-artifacts/."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from browser_util import LiveServer, find, screenshot, text_of, wait

from test_dashboard_browser import driver, live  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(120)


async def _chat_with(live: LiveServer, secret: str) -> dict[str, Any]:
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "from a key"}]}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{live.url}/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {secret}"}) as resp:
            assert resp.status == 200
            return await resp.json()


def test_create_a_key_use_it_and_follow_its_usage(driver, live):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    live.open_page(driver, "/admin/ui/keys")
    find(driver, "#name").send_keys("browser-key")
    find(driver, "#rpm").send_keys("10")
    find(driver, "#create-key button[type=submit]").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#new-secret"))
    secret = find(driver, "#new-secret").get_attribute("value")
    assert secret.startswith("sk-") and len(secret) > 30
    find(driver, "#copy-secret").click()
    wait(driver, lambda d: find(d, "#copy-secret").text == "Copied")
    note = find(driver, "#note")
    note.click()
    note.send_keys(Keys.CONTROL, "v")
    assert note.get_attribute("value") == secret  # the clipboard held the secret
    screenshot(driver, "key-created")

    reply = live.run(_chat_with(live, secret))
    live.open_page(driver, "/admin/ui/keys")
    assert secret not in driver.page_source and "browser-key" in driver.page_source

    live.open_page(driver, "/admin/ui/usage?key_name=browser-key")
    rows = driver.find_elements(By.CSS_SELECTOR, "#usage-table tbody tr[data-request-id]")
    assert len(rows) == 1 and "browser-key" in rows[0].text
    assert f"{reply['usage']['prompt_tokens']} + {reply['usage']['completion_tokens']}" \
        in rows[0].text
    screenshot(driver, "request-log")
    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#request-detail"))
    assert text_of(driver, "[data-field=key_name]") == "browser-key"
    assert text_of(driver, "[data-field=account]").endswith("@example.com")
    screenshot(driver, "request-detail")

    live.open_page(driver, "/admin/")
    chart = find(driver, "#traffic [data-chart=requests]")
    assert int(chart.find_element(By.CSS_SELECTOR, "[data-total]").text) >= 1
    assert chart.find_elements(By.CSS_SELECTOR, "svg rect.bar")
    find(driver, "#traffic").location_once_scrolled_into_view
    screenshot(driver, "overview-traffic")

    live.open_page(driver, "/admin/ui/keys")
    driver.find_element(By.LINK_TEXT, "browser-key").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#key-limits"))
    rpm = text_of(driver, "[data-limit=rpm]")
    assert rpm.endswith("1 10 10.0%")
    assert find(driver, "#key-usage [data-chart=tokens] [data-total]").text == str(
        reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"])
    screenshot(driver, "key-page")
