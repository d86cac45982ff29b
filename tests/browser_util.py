"""Browser-test support: headless Chromium through Selenium, a ds2proxy in
front of the fake upstream served from a background event loop (Selenium
calls block, so the server cannot share the test's thread), and screenshots.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import aiohttp
from conftest import ACCOUNTS, ADMIN_KEY, FAKE_DIFFICULTY, REPO, TEST_KEY, base_config

from ds2proxy.app import CORE, create_app, start_server
from ds2proxy.config_store import ConfigStore
from ds2proxy.core import Core
from ds2proxy.testing import FakeAccount, FakeDeepSeek

T = TypeVar("T")

ARTIFACTS = REPO / "test-artifacts"
DESKTOP = (1360, 1000)
WAIT = 15
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                "--disable-dev-shm-usage", f"--window-size={DESKTOP[0]},{DESKTOP[1]}")


def chromium_or_skip() -> tuple[str, str]:
    """Paths of Chromium and chromedriver; skip the module when either is missing."""
    browser = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("browser tests need Chromium and chromedriver on PATH "
                    "(Debian packages chromium and chromium-driver)")
    return browser, driver


def start_chromium(profile: Path, *, javascript: bool = True) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@contextmanager
def chromium(*, javascript: bool = True) -> Iterator[Any]:
    """A headless Chromium with a throw-away profile, quit on exit."""
    with tempfile.TemporaryDirectory(prefix="ds2proxy-chromium-") as profile:
        browser = start_chromium(Path(profile), javascript=javascript)
        try:
            yield browser
        finally:
            browser.quit()


def screenshot(driver: Any, name: str) -> Path:
    """Save the whole page, as laid out at the window's width, under test-artifacts/.

    The viewport is stretched to the page's height for the capture (and put
    back after), so everything shows in one image at the width under test.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    width, height = driver.execute_script(
        "return [window.innerWidth, document.documentElement.scrollHeight]")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(height, 6000), "deviceScaleFactor": 1, "mobile": False})
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path = ARTIFACTS / f"dashboard-{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def wait(driver: Any, condition: Any, timeout: float = WAIT) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def find(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def text_of(driver: Any, css: str) -> str:
    return find(driver, css).text


class LiveServer:
    """The fake upstream and a ds2proxy, running on their own event-loop thread."""

    def __init__(self, extra_accounts: dict[str, str] | None = None) -> None:
        self.extra_accounts = extra_accounts or {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.folder = Path(tempfile.mkdtemp(prefix="ds2proxy-browser-"))
        self.url = ""
        self.admin_key = ADMIN_KEY

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on the server's loop thread (reads and writes stay race-free)."""

        async def call() -> T:
            return fn()

        return self.run(call())

    @property
    def core(self) -> Core:
        return self.app[CORE]

    def start(self) -> LiveServer:
        self.thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        users = dict(ACCOUNTS) | self.extra_accounts
        self.fake = FakeDeepSeek([FakeAccount(pw, email=email) for email, pw in users.items()],
                                 difficulty=FAKE_DIFFICULTY)
        await self.fake.start()
        path = self.folder / "config.json"
        path.write_text(json.dumps(base_config(self.fake)))
        self.app = create_app(ConfigStore.from_sources(str(path), {}), admin_key=self.admin_key)
        self.server = await start_server(self.app)
        self.url = self.server.url

    async def chat(self, message: str) -> None:
        """One chat completion through the API, as a client would send it."""
        body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": message}]}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {TEST_KEY}"}) as resp:
                assert resp.status == 200

    def open_page(self, driver: Any, path: str) -> None:
        """Go to ``path``, logging in first when the session is missing."""
        driver.get(self.url + path)
        if "/admin/ui/login" in driver.current_url:
            find(driver, "#admin_key").send_keys(self.admin_key)
            find(driver, "#login-submit").click()
            wait(driver, lambda d: "/admin/ui/login" not in d.current_url)

    def stop(self) -> None:
        async def close() -> None:
            await self.server.close()
            await self.fake.close()

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)
