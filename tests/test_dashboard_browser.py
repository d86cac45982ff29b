"""The dashboard in headless Chromium, driving the real server: log in, add
an account and test it, change a setting and see it applied, stream an
answer in the playground, refuse a CSRF-less form, log out. Every page is
saved as a screenshot under test-artifacts/.

Selenium blocks, so these tests are synchronous and the server runs on its
own event-loop thread (see ``browser_util.LiveServer``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_util import LiveServer, chromium, chromium_or_skip, find, screenshot, text_of, wait

from ds2proxy.testing import Delivery, Scripted

pytestmark = pytest.mark.timeout(90)

CAROL = ("carol@example.com", "pw-carol")


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    chromium_or_skip()
    server = LiveServer(extra_accounts=dict([CAROL])).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def driver(live: LiveServer) -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def test_log_in_and_watch_the_overview(driver, live):
    driver.get(live.url + "/admin/")
    wait(driver, lambda d: "/admin/ui/login" in d.current_url)
    screenshot(driver, "login")
    find(driver, "#admin_key").send_keys("not the key")
    find(driver, "#login-submit").click()
    wait(driver, lambda d: "invalid admin key" in text_of(d, "#login-error"))
    find(driver, "#admin_key").send_keys(live.admin_key)
    find(driver, "#login-submit").click()
    wait(driver, lambda d: d.current_url.endswith("/admin/"))
    assert text_of(driver, "h1") == "Overview"
    # Live updates: the badge appears once /admin/overview answered the page's poll.
    wait(driver, lambda d: find(d, "#live-badge").is_displayed())
    assert "alice@example.com" in text_of(driver, "#overview-accounts")
    screenshot(driver, "overview")


def test_add_an_account_and_test_it(driver, live):
    live.open_page(driver, "/admin/ui/accounts")
    find(driver, "#login").send_keys(CAROL[0])
    find(driver, "#password").send_keys(CAROL[1])
    find(driver, "#add-account-submit").click()
    wait(driver, lambda d: f"Account {CAROL[0]} added" in text_of(d, "#flash"))
    assert live.on_loop(lambda: live.core.pool.find(CAROL[0])) is not None
    row = f'tr[data-account="{CAROL[0]}"]'
    find(driver, f"{row} form[data-js='test-one'] button").click()
    wait(driver, lambda d: "OK" in text_of(d, f"{row} .test-result"))
    assert [c.account for c in live.fake.calls_to("chat_session/create")].count(CAROL[0]) == 1
    # The login the test made shows up in place as a token preview.
    assert "no token yet" not in text_of(driver, f"{row} .token-state")
    assert text_of(driver, f"{row} .token-state").startswith("token ")
    find(driver, "#test-all-submit").click()
    wait(driver, lambda d: "Done: 3 of 3 accounts passed." in text_of(d, "#test-all-progress"))
    wait(driver, lambda d: d.execute_script(
        "const bar = document.querySelector('#test-all-progress .meter > span');"
        "return bar.getBoundingClientRect().width >= bar.parentElement.clientWidth - 1;"))
    assert CAROL[1] not in driver.page_source
    screenshot(driver, "accounts")


def test_a_later_success_clears_stale_failures(driver, live):
    """An error banner from an earlier form post and a refused "test all" run
    go away once a later test works, instead of reporting a problem that is gone."""
    live.open_page(driver, "/admin/ui/accounts")
    find(driver, "#add-account-submit").click()  # nothing filled in: refused
    wait(driver, lambda d: "flash-error" in find(d, "#flash").get_attribute("class"))
    # The session ends (as when the password is changed elsewhere): "test all" is refused.
    session = driver.get_cookie(f"ds2proxy_admin_{live.server.port}")
    driver.delete_cookie(session["name"])
    find(driver, "#test-all-submit").click()
    wait(driver, lambda d: find(d, "#test-all-progress").get_attribute("data-state") == "failed")
    assert "log in again" in text_of(driver, "#test-all-progress .caption")
    screenshot(driver, "accounts-failures")
    # Logged in again: the next test works, and both failures are gone.
    driver.add_cookie(session)
    row = 'tr[data-account="alice@example.com"]'
    find(driver, f"{row} form[data-js='test-one'] button").click()
    wait(driver, lambda d: "OK" in text_of(d, f"{row} .test-result"))
    assert not driver.find_elements("css selector", ".flash-error")
    assert not find(driver, "#test-all-progress").is_displayed()


def test_change_a_setting_and_see_it_applied(driver, live):
    live.open_page(driver, "/admin/ui/settings")
    field = find(driver, "#runtime\\.account_max_inflight")
    field.clear()
    field.send_keys("0")
    find(driver, "#save-settings").click()
    wait(driver, lambda d: "must be between 1 and 64" in text_of(
        d, '[data-field="runtime.account_max_inflight"] .error'))
    screenshot(driver, "settings-error")
    field = find(driver, "#runtime\\.account_max_inflight")
    field.clear()
    field.send_keys("3")
    find(driver, "#save-settings").click()
    wait(driver, lambda d: "Settings saved" in text_of(d, "#flash"))
    assert live.on_loop(lambda: live.core.pool.limits.per_account) == 3
    assert find(driver, "#runtime\\.account_max_inflight").get_attribute("value") == "3"
    screenshot(driver, "settings")


def test_the_playground_streams_the_answer_as_it_arrives(driver, live):
    answer = "Streaming arrives piece by piece, not all at once."
    script = Scripted(thinking="Let me think about streams.", answer=answer, chunk_size=2,
                      delivery=Delivery(chunk_delay=0.03))
    live.on_loop(lambda: live.fake.enqueue(script))
    live.open_page(driver, "/admin/ui/playground")
    message = find(driver, "#pg-message")
    message.clear()
    message.send_keys("Tell me about streaming.")
    find(driver, "#pg-send").click()
    # Part of the answer is on screen while the stream is still running.
    wait(driver, lambda d: text_of(d, "#pg-answer")
         and find(d, "#pg-answer").get_attribute("data-done") is None)
    wait(driver, lambda d: find(d, "#pg-answer").get_attribute("data-done") == "true")
    assert text_of(driver, "#pg-answer") == answer
    assert text_of(driver, "#pg-thinking-text") == "Let me think about streams."
    assert text_of(driver, "#pg-state") == "Done."
    screenshot(driver, "playground")


@pytest.mark.parametrize("family", ["anthropic", "gemini"])
def test_the_playground_reads_every_familys_stream(driver, live, family):
    from selenium.webdriver.support.ui import Select

    live.open_page(driver, "/admin/ui/playground")
    Select(find(driver, "#pg-family")).select_by_value(family)
    assert find(driver, "#pg-model").get_attribute("value") != "deepseek-reasoner"
    message = find(driver, "#pg-message")
    message.clear()
    message.send_keys(f"Hello over {family}.")
    find(driver, "#pg-send").click()
    wait(driver, lambda d: find(d, "#pg-answer").get_attribute("data-done") == "true"
         or text_of(d, "#pg-state") == "Failed.")
    assert f"You said: Hello over {family}." in text_of(driver, "#pg-answer")
    if family == "anthropic":  # an opus model thinks; its reasoning stays apart
        assert "I will repeat it back." in text_of(driver, "#pg-thinking-text")
        assert "I will repeat it back." not in text_of(driver, "#pg-answer")


@pytest.mark.parametrize("page", ["keys", "config", "plugins"])
def test_the_other_pages_render(driver, live, page):
    live.open_page(driver, f"/admin/ui/{page}")
    assert find(driver, "nav a[aria-current='page']").get_attribute("href").endswith(page)
    assert driver.find_elements("css selector", ".card")
    screenshot(driver, page)


def test_captures_show_upstream_exchanges_redacted(driver, live):
    live.run(live.core.store.update(lambda doc: doc.update(dev_captures={"enabled": True})))
    live.run(live.chat("Capture this exchange."))
    live.open_page(driver, "/admin/ui/captures")
    completion = next(d for d in driver.find_elements("css selector", "details.capture")
                      if d.text.split()[1].endswith("/api/v0/chat/completion"))
    completion.find_element("css selector", "summary").click()
    wait(driver, lambda d: "x-ds-pow-response" in completion.text)
    assert "[redacted]" in completion.text and "Capture this exchange." in completion.text
    tokens = live.on_loop(lambda: [s.token for s in live.core.pool.accounts() if s.token])
    assert tokens and not any(token in driver.page_source for token in tokens)
    screenshot(driver, "captures")


def test_a_form_posted_without_its_csrf_token_is_refused(driver, live):
    live.open_page(driver, "/admin/ui/keys")
    driver.execute_script("""
        const form = document.createElement('form');
        form.method = 'post';
        form.action = '/admin/ui/keys/add';
        const key = document.createElement('input');
        key.name = 'key';
        key.value = 'sk-forged-by-another-page';
        form.append(key);
        document.body.append(form);
        form.submit();
    """)
    wait(driver, lambda d: text_of(d, "#error-title") == "Request refused")
    assert "security token" in text_of(driver, "#error-message")
    assert "sk-forged-by-another-page" not in live.on_loop(lambda: live.core.config.key_secrets)
    screenshot(driver, "csrf-refused")


def test_log_out(driver, live):
    live.open_page(driver, "/admin/")
    find(driver, "#logout").click()
    wait(driver, lambda d: "/admin/ui/login" in d.current_url)
    assert "logged out" in text_of(driver, "#flash")
    driver.get(live.url + "/admin/ui/accounts")
    wait(driver, lambda d: "/admin/ui/login" in d.current_url)
