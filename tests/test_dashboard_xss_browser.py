"""Strings from clients, the upstream and the admin's own input reach the
dashboard as text, never as markup, in real Chromium: an account login, a
key's name, note and models, a model name a client asked for (the recent
errors, re-rendered live by admin.js, and the request log), an account
test's failure message and a captured upstream exchange. On every page no
planted handler runs, no planted element exists, and the text reads as sent.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from browser_util import LiveServer, find, text_of, wait

from conftest import TEST_KEY
from test_dashboard_browser import driver, live  # noqa: F401  (fixtures)

from ds2proxy.testing.fake_provider import FakeProvider
from ds2proxy.testing.provider_replies import ProviderReply

pytestmark = pytest.mark.timeout(120)

PAYLOAD = '<img src=x onerror=__xss=1><script>__xss=2</script>'
EMAIL = f"mallory{PAYLOAD}@example.com"


async def _plant(live: LiveServer) -> dict[str, Any]:
    """Put the payload everywhere a client or an admin can."""
    admin = {"Authorization": f"Bearer {live.admin_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{live.url}/admin/accounts", headers=admin,
                             json={"email": EMAIL, "password": "wrong"}) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(f"{live.url}/admin/keys", headers=admin, json={
                "name": f"k{PAYLOAD}", "note": PAYLOAD, "models": ["deepseek-*", PAYLOAD]},
                ) as resp:
            assert resp.status == 200, await resp.text()
            key = await resp.json()
        for model, secret in ((PAYLOAD, TEST_KEY), ("deepseek-chat", key["key"])):
            async with http.post(f"{live.url}/v1/chat/completions", json={
                    "model": model, "messages": [{"role": "user", "content": PAYLOAD}]},
                    headers={"Authorization": f"Bearer {secret}", "User-Agent": PAYLOAD}) as resp:
                assert resp.status == (400 if model == PAYLOAD else 200)
    return key


def assert_inert(driver: Any, *, shown: bool = True) -> None:
    assert driver.execute_script("return window.__xss") is None
    assert driver.execute_script(
        "return document.querySelectorAll('img[src=\"x\"], body script:not([src])').length") == 0
    if shown:
        assert PAYLOAD in driver.execute_script("return document.body.innerText")


def test_planted_markup_is_shown_as_text_on_every_page(driver, live):  # noqa: F811
    live.run(live.core.store.update(lambda doc: doc.update(dev_captures={"enabled": True})))
    key = live.run(_plant(live))
    rows = live.run(_request_rows(live))

    live.open_page(driver, "/admin/")
    wait(driver, lambda d: find(d, "#live-badge").is_displayed())  # admin.js re-rendered it
    assert PAYLOAD in text_of(driver, "#overview-errors") and EMAIL in text_of(
        driver, "#overview-accounts").replace("\n", "")
    assert_inert(driver)

    live.open_page(driver, "/admin/ui/accounts")
    find(driver, "#test-all-submit").click()
    wait(driver, lambda d: "Done:" in text_of(d, "#test-all-progress"))
    assert_inert(driver)

    for path in ("/admin/ui/keys", f"/admin/ui/keys/{key['id']}", "/admin/ui/usage",
                 *(f"/admin/ui/usage/{row}" for row in rows), "/admin/ui/captures",
                 "/admin/ui/config"):
        live.open_page(driver, path)
        for details in driver.find_elements("css selector", "details"):
            driver.execute_script("arguments[0].open = true", details)
        assert_inert(driver, shown=path != "/admin/ui/config")


async def _request_rows(live: LiveServer) -> list[int]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{live.url}/admin/usage/requests", headers={
                "Authorization": f"Bearer {live.admin_key}"}) as resp:
            return [r["id"] for r in (await resp.json())["requests"][:2]]


# Without spaces: provider models, base URLs and aliases may hold none.
TIGHT = "<svg/onload=__xss=3><img/src=x/onerror=__xss=4>"


async def _plant_admin_text(live: LiveServer) -> FakeProvider:
    """A provider whose error message, model names and base URL carry markup,
    a model alias and a plugin setting that do too."""
    fake = FakeProvider(["m1"])
    await fake.start()
    fake.enqueue(ProviderReply(status=500, error_message=PAYLOAD))
    admin = {"Authorization": f"Bearer {live.admin_key}"}
    writes = [
        ("POST", "/admin/providers", {"name": "evil", "base_url": fake.base_url,
                                      "models": [TIGHT, "m1"]}),
        ("POST", "/admin/providers", {"name": "odd", "models": ["x-*"],
                                      "base_url": f"http://127.0.0.1:9/v1/{TIGHT}"}),
        ("POST", "/admin/providers/evil/test", {"model": "m1"}),
        ("PUT", "/admin/settings", {"model_aliases": {TIGHT: "deepseek-chat"}}),
        ("PUT", "/admin/plugins/hello/settings", {"greeting": PAYLOAD}),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, body in writes:
            async with http.request(method, f"{live.url}{path}", json=body,
                                    headers=admin) as resp:
                assert resp.status == 200, (path, await resp.text())
    return fake


def test_provider_setting_and_plugin_text_is_shown_as_text(driver, live):  # noqa: F811
    """A provider's own error text, model names and base URL, a model alias
    and a plugin's setting reach the providers, settings,
    config, playground and plugins pages as text: no planted handler runs."""
    fake = live.run(_plant_admin_text(live))
    try:
        live.open_page(driver, "/admin/ui/providers")
        assert "HTTP 500: " + PAYLOAD in text_of(driver, '[data-provider="evil"] .test-result')
        assert TIGHT in text_of(driver, '[data-provider="evil"] .models')
        assert TIGHT in text_of(driver, '[data-provider="odd"] .base-url').replace("\n", "")
        for path in ("/admin/ui/providers", "/admin/ui/settings", "/admin/ui/config",
                     "/admin/ui/playground", "/admin/ui/plugins"):
            live.open_page(driver, path)
            for details in driver.find_elements("css selector", "details"):
                driver.execute_script("arguments[0].open = true", details)
            assert driver.execute_script("return [window.__xss, document.querySelectorAll("
                                         "'[onload], [onerror], body script:not([src])')"
                                         ".length]") == [None, 0], path
    finally:
        live.run(fake.close())
