"""The dashboard's layout in headless Chromium at a phone's width (400 px), a
tablet's or half a screen's (850 px) and a desktop's (1280 px): the menu
reaches every page (with and without JavaScript), no page is wider than the
window, tables scroll inside their card, and the sidebar runs the full
height of a long page. Every page at every width is saved under
test-artifacts/ as dashboard-<page>-<width>.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_util import LiveServer, chromium, chromium_or_skip, find, screenshot, text_of, wait
from test_dashboard_browser import driver  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(90)

PHONE, TABLET, DESKTOP = 400, 850, 1280
WIDTHS = (PHONE, TABLET, DESKTOP)
PAGES = {
    "overview": "/admin/",
    "accounts": "/admin/ui/accounts",
    "providers": "/admin/ui/providers",
    "keys": "/admin/ui/keys",
    "usage": "/admin/ui/usage",
    "playground": "/admin/ui/playground",
    "settings": "/admin/ui/settings",
    "config": "/admin/ui/config",
    "captures": "/admin/ui/captures",
    "plugins": "/admin/ui/plugins",
}
LONG_ACCOUNT = "a-rather-long-mailbox-name.for-the-layout@accounts.example.com"
MORE_ACCOUNTS = [LONG_ACCOUNT] + [f"user{i:02d}@example.com" for i in range(30)]
MORE_KEYS = [f"sk-layout-{i:02d}-{'x' * 32}" for i in range(40)]


def _many_accounts_and_keys(doc: dict[str, Any]) -> None:
    doc["accounts"].extend({"email": email, "password": "pw"} for email in MORE_ACCOUNTS)
    doc["keys"].extend(MORE_KEYS)
    doc["dev_captures"] = {"enabled": True}


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    """A server with pages long enough to scroll and tables wide enough to crowd."""
    chromium_or_skip()
    server = LiveServer().start()
    try:
        server.run(server.core.store.update(_many_accounts_and_keys))
        server.run(server.chat("Fill the captures page."))
        yield server
    finally:
        server.stop()


def at_width(driver: Any, width: int) -> None:
    """Resize the window and wait until the page is laid out at that width."""
    driver.set_window_size(width, 900)
    wait(driver, lambda d: d.execute_script("return window.innerWidth") == width)


def nav_links(driver: Any) -> list[Any]:
    return driver.find_elements("css selector", "nav[aria-label='Dashboard'] a")


def open_menu_and_go_to_keys(driver: Any) -> None:
    """Below the breakpoint the links hide behind the menu button until it is pressed."""
    assert not any(link.is_displayed() for link in nav_links(driver))
    button = find(driver, "#menu-button")
    assert button.is_displayed() and button.text == "Menu"
    button.click()
    wait(driver, lambda d: all(link.is_displayed() for link in nav_links(d)))
    find(driver, "nav a[href='/admin/ui/keys']").click()
    wait(driver, lambda d: d.current_url.endswith("/admin/ui/keys"))
    assert text_of(driver, "h1") == "API keys"
    assert find(driver, "nav a[aria-current='page']").get_attribute("href").endswith("/keys")
    # The new page starts with the menu closed again.
    assert not any(link.is_displayed() for link in nav_links(driver))


@pytest.mark.parametrize("width", [PHONE, TABLET])
def test_the_menu_opens_and_leads_to_a_page(driver, live, width):
    at_width(driver, width)
    live.open_page(driver, "/admin/ui/accounts")
    find(driver, "#menu-button").click()
    wait(driver, lambda d: find(d, "#logout").is_displayed())
    screenshot(driver, f"menu-open-{width}")
    find(driver, "#menu-button").click()  # and it closes again
    wait(driver, lambda d: not find(d, "#logout").is_displayed())
    open_menu_and_go_to_keys(driver)


def test_the_menu_opens_from_the_keyboard(driver, live):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    at_width(driver, PHONE)
    live.open_page(driver, "/admin/ui/keys")
    ActionChains(driver).send_keys(Keys.TAB).perform()  # the first stop on the page
    assert driver.execute_script("return document.activeElement.id") == "menu-toggle"
    ActionChains(driver).send_keys(Keys.SPACE).perform()
    wait(driver, lambda d: all(link.is_displayed() for link in nav_links(d)))


def test_the_menu_works_without_javascript(live):
    with chromium(javascript=False) as browser:
        at_width(browser, PHONE)
        live.open_page(browser, "/admin/ui/playground")
        # Proof that scripts are off: the playground's <noscript> notice shows.
        assert "turn it on" in text_of(browser, ".banner-warn")
        open_menu_and_go_to_keys(browser)


def test_the_desktop_shows_the_sidebar_without_a_menu_button(driver, live):
    at_width(driver, DESKTOP)
    live.open_page(driver, "/admin/ui/accounts")
    assert not find(driver, "#menu-button").is_displayed()
    assert len(nav_links(driver)) == len(PAGES)
    assert all(link.is_displayed() for link in nav_links(driver))
    find(driver, "nav a[href='/admin/ui/plugins']").click()
    wait(driver, lambda d: d.current_url.endswith("/admin/ui/plugins"))
    assert text_of(driver, "h1") == "Plugins"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", list(PAGES))
def test_no_page_is_wider_than_the_window(driver, live, page, width):
    at_width(driver, width)
    live.open_page(driver, PAGES[page])
    driver.execute_script("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page_width, window_width = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert page_width <= window_width, f"{page} is {page_width} px wide in a {width} px window"
    screenshot(driver, f"{page}-{width}")


TABLE_BOX = """
const scroller = arguments[0];
const card = scroller.closest('.card').getBoundingClientRect();
const box = scroller.getBoundingClientRect();
return {overflow: getComputedStyle(scroller).overflowX, scrollWidth: scroller.scrollWidth,
        clientWidth: scroller.clientWidth, left: box.left, right: box.right,
        cardLeft: card.left, cardRight: card.right,
        windowWidth: document.documentElement.clientWidth};
"""

LAST_CELL_SHOWN = """
const scroller = arguments[0];
scroller.scrollLeft = scroller.scrollWidth;
const cell = scroller.querySelector('tbody tr:first-child td:last-child').getBoundingClientRect();
const box = scroller.getBoundingClientRect();
return [scroller.scrollLeft, cell.left >= box.left - 1 && cell.right <= box.right + 1];
"""


@pytest.mark.parametrize(("page", "crowded"), [
    ("accounts", True), ("plugins", True), ("overview", False), ("keys", False)])
def test_tables_scroll_inside_their_card_on_a_phone(driver, live, page, crowded):
    at_width(driver, PHONE)
    live.open_page(driver, PAGES[page])
    scrollers = driver.find_elements("css selector", ".card .table-scroll")
    assert len(scrollers) == len(driver.find_elements("css selector", "table"))
    for scroller in scrollers:
        box = driver.execute_script(TABLE_BOX, scroller)
        assert box["overflow"] == "auto"
        assert box["cardLeft"] <= box["left"] and box["right"] <= box["cardRight"]
        assert box["cardRight"] <= box["windowWidth"]
    if crowded:  # wider than a phone: it scrolls, and its last column can be brought into view
        box = driver.execute_script(TABLE_BOX, scrollers[0])
        assert box["scrollWidth"] > box["clientWidth"]
        moved, shown = driver.execute_script(LAST_CELL_SHOWN, scrollers[0])
        assert moved > 0 and shown
        screenshot(driver, f"{page}-{PHONE}-scrolled")


@pytest.mark.parametrize("page", ["accounts", "plugins", "overview", "keys"])
def test_tables_fit_a_desktop_window_without_scrolling(driver, live, page):
    at_width(driver, DESKTOP)
    live.open_page(driver, PAGES[page])
    for scroller in driver.find_elements("css selector", ".table-scroll"):
        box = driver.execute_script(TABLE_BOX, scroller)
        assert box["scrollWidth"] <= box["clientWidth"]


SIDEBAR = """
const side = document.querySelector('.sidebar').getBoundingClientRect();
return {side: side.height, page: document.documentElement.scrollHeight,
        window: window.innerHeight};
"""

IN_VIEW = """
const box = arguments[0].getBoundingClientRect();
return box.top >= 0 && box.bottom <= window.innerHeight && box.height > 0;
"""


def test_the_sidebar_runs_the_full_height_of_a_long_page(driver, live):
    at_width(driver, DESKTOP)
    live.open_page(driver, "/admin/ui/keys")
    heights = driver.execute_script(SIDEBAR)
    assert heights["page"] > 2 * heights["window"], "the keys page should be long"
    assert heights["side"] >= heights["page"] - 1
    # Scrolled to the bottom, the navigation and the log-out button are still on screen.
    driver.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
    wait(driver, lambda d: d.execute_script("return window.scrollY") > 0)
    assert driver.execute_script(IN_VIEW, find(driver, "nav a[href='/admin/ui/keys']"))
    assert driver.execute_script(IN_VIEW, find(driver, "#logout"))
    screenshot(driver, f"long-page-{DESKTOP}")
