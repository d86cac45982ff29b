"""The Providers page in headless Chromium against a real server and the fake
provider: add one, test it, see which models it serves, edit it without
retyping its key, be told which field is wrong, delete it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_util import LiveServer, chromium, chromium_or_skip, find, screenshot, text_of, wait

from ds2proxy.testing.fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(90)

KEY = "sk-browser-provider-key-13579bdf"
HEADER = "org-header-secret-2468aceg"
ROW = 'tr[data-provider="qwen"]'
OPEN_DETAILS = "document.querySelectorAll('details').forEach(d => { d.open = %s; })"


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LiveServer, FakeProvider]]:
    chromium_or_skip()
    server = LiveServer().start()
    fake = FakeProvider(["qwen-max", "qwen-plus", "bge-m3"], api_key=KEY)
    server.run(fake.start())
    try:
        yield server, fake
    finally:
        server.run(fake.close())
        server.stop()


@pytest.fixture(scope="module")
def driver(live) -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def _type(driver: Any, css: str, text: str) -> None:
    field = find(driver, css)
    field.clear()
    field.send_keys(text)


def test_add_test_edit_and_delete_a_provider(driver, live):
    from selenium.webdriver.support.ui import Select

    server, fake = live
    server.open_page(driver, "/admin/ui/providers")
    assert "No providers yet" in text_of(driver, "#providers-table")
    _type(driver, "#provider-name", "qwen")
    _type(driver, "#provider-base_url", fake.base_url)
    _type(driver, "#provider-api_key", KEY)
    _type(driver, "#provider-models", "qwen-*, bge-m3")
    _type(driver, "#provider-headers", f"X-Org: {HEADER}")
    _type(driver, "#provider-embeddings_batch_size", "16")
    find(driver, "#add-provider-submit").click()
    wait(driver, lambda d: "Provider qwen added" in text_of(d, "#flash"))
    stored = server.on_loop(lambda: server.core.config.provider_named("qwen"))
    assert stored.api_key == KEY and stored.models == ("qwen-*", "bge-m3")
    assert dict(stored.headers) == {"X-Org": HEADER} and stored.embeddings_batch_size == 16
    assert text_of(driver, f"{ROW} .key-state") == "key sk-b…df"
    assert KEY not in driver.page_source and HEADER not in driver.page_source

    find(driver, f"{ROW} form.test-provider button").click()
    wait(driver, lambda d: "qwen works" in text_of(d, "#flash"))
    assert "OK" in text_of(driver, f"{ROW} .test-result")
    assert text_of(driver, f"{ROW} .serves") == "serves qwen-max, qwen-plus, bge-m3"
    assert fake.calls[-1].path == "/v1/models"
    screenshot(driver, "providers")
    _fits_a_phone(driver)
    # With a model chosen, the test asks it for one token.
    Select(find(driver, f"{ROW} select.test-model")).select_by_value("bge-m3")
    find(driver, f"{ROW} form.test-provider button").click()
    wait(driver, lambda d: "answered in model bge-m3" in text_of(d, "#flash"))
    assert fake.chat_requests()[-1]["model"] == "bge-m3"

    # Edit: the key field stays empty (the stored key is kept), headers show masked.
    find(driver, '[data-edit="qwen"] summary').click()
    assert find(driver, "#edit-qwen-api_key").get_attribute("value") == ""
    assert HEADER not in find(driver, "#edit-qwen-headers").get_attribute("value")
    _type(driver, "#edit-qwen-models", "qwen-max")
    find(driver, "#edit-qwen-tools").click()
    find(driver, '[data-edit="qwen"] .save-provider').click()
    wait(driver, lambda d: "Provider qwen saved" in text_of(d, "#flash"))
    stored = server.on_loop(lambda: server.core.config.provider_named("qwen"))
    assert stored.api_key == KEY and dict(stored.headers) == {"X-Org": HEADER}
    assert stored.models == ("qwen-max",) and stored.tools is False
    assert "tools emulated" in text_of(driver, ROW)

    # The settings page offers the provider as the embeddings engine.
    server.open_page(driver, "/admin/ui/settings")
    engine = Select(find(driver, "#embeddings\\.provider"))
    assert [o.get_attribute("value") for o in engine.options] == ["", "testing", "qwen"]
    engine.select_by_value("qwen")
    find(driver, "#save-settings").click()
    wait(driver, lambda d: "Settings saved" in text_of(d, "#flash"))
    assert server.on_loop(lambda: server.core.config.embeddings.provider) == "qwen"
    server.open_page(driver, "/admin/ui/providers")
    assert "qwen" in text_of(driver, "#embeddings-use")
    server.run(server.core.store.update(lambda doc: doc.update(embeddings={})))

    # A wrong field is named in the message; nothing is added.
    _type(driver, "#provider-name", "second")
    _type(driver, "#provider-base_url", "ftp://example.com/v1")
    _type(driver, "#provider-models", "m")
    find(driver, "#add-provider-submit").click()
    wait(driver, lambda d: "flash-error" in find(d, "#flash").get_attribute("class"))
    assert "base_url" in text_of(driver, "#flash")
    assert server.on_loop(lambda: len(server.core.config.providers)) == 1
    screenshot(driver, "providers-error")

    find(driver, f"{ROW} form[data-confirm] button").click()
    wait(driver, lambda d: d.switch_to.alert).accept()
    wait(driver, lambda d: "Provider qwen removed" in text_of(d, "#flash"))
    assert server.on_loop(lambda: server.core.config.providers) == ()
    assert "No providers yet" in text_of(driver, "#providers-table")


def _fits_a_phone(driver: Any) -> None:
    """At 390 px, with the edit form open, nothing makes the page scroll sideways."""
    desktop = driver.get_window_size()
    driver.set_window_size(390, 900)
    try:
        wait(driver, lambda d: d.execute_script("return window.innerWidth") == 390)
        driver.execute_script(OPEN_DETAILS % "true")
        page, window = driver.execute_script("return [document.documentElement.scrollWidth, "
                                             "document.documentElement.clientWidth]")
        assert page <= window
        screenshot(driver, "providers-390")
    finally:
        driver.execute_script(OPEN_DETAILS % "false")
        driver.set_window_size(desktop["width"], desktop["height"])


def test_the_output_limit_field_is_set_edited_and_checked_on_the_form(driver, live):
    """The config (and the JSON API) take ``max_tokens_field``; the form had no
    control for it, so a provider refusing ``max_tokens`` needed a config edit."""
    from selenium.webdriver.support.ui import Select

    server, fake = live
    server.open_page(driver, "/admin/ui/providers")
    limit = Select(find(driver, "#provider-max_tokens_field"))
    assert [o.get_attribute("value") for o in limit.options] == [
        "auto", "max_tokens", "max_completion_tokens"]
    assert limit.first_selected_option.get_attribute("value") == "auto"
    _type(driver, "#provider-name", "limits")
    _type(driver, "#provider-base_url", fake.base_url)
    _type(driver, "#provider-models", "qwen-max")
    limit.select_by_value("max_completion_tokens")
    find(driver, "#add-provider-submit").click()
    wait(driver, lambda d: "Provider limits added" in text_of(d, "#flash"))
    saved = lambda: server.on_loop(  # noqa: E731
        lambda: server.core.config.provider_named("limits").max_tokens_field)
    assert saved() == "max_completion_tokens"
    row = 'tr[data-provider="limits"]'
    assert "limit as max_completion_tokens" in text_of(driver, row)

    find(driver, '[data-edit="limits"] summary').click()
    edit = Select(find(driver, "#edit-limits-max_tokens_field"))
    assert edit.first_selected_option.get_attribute("value") == "max_completion_tokens"
    edit.select_by_value("max_tokens")
    find(driver, '[data-edit="limits"] .save-provider').click()
    wait(driver, lambda d: "Provider limits saved" in text_of(d, "#flash"))
    assert saved() == "max_tokens"

    # A value the select does not offer is refused as the JSON API refuses it.
    find(driver, '[data-edit="limits"] summary').click()
    driver.execute_script("const s = document.getElementById('edit-limits-max_tokens_field');"
                          "s.options[0].value = 'max_output_tokens'; s.selectedIndex = 0;")
    find(driver, '[data-edit="limits"] .save-provider').click()
    wait(driver, lambda d: "flash-error" in find(d, "#flash").get_attribute("class"))
    assert "max_tokens_field" in text_of(driver, "#flash")
    assert saved() == "max_tokens"
    server.run(server.core.store.update(lambda doc: doc.update(providers=[])))
