"""Browser-test support: headless Chromium through Selenium, a ds2proxy in
front of the fake upstream served from a background event loop (Selenium
calls block, so the server cannot share the test's thread), and screenshots.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import ACCOUNTS, ADMIN_KEY, FAKE_DIFFICULTY, REPO, base_config

from ds2proxy.app import CORE, create_app, start_server
from ds2proxy.config_store import ConfigStore
from ds2proxy.core import Core
from ds2proxy.testing import FakeAccount, FakeDeepSeek

T = TypeVar("T")

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                "--disable-dev-shm-usage", "--window-size=1360,1000")


def chromium_or_skip() -> tuple[str, str]:
    """Paths of Chromium and chromedriver; skip the module when either is missing."""
    browser = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("browser tests need Chromium and chromedriver on PATH "
                    "(Debian packages chromium and chromium-driver)")
    return browser, driver


def start_chromium(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def screenshot(driver: Any, name: str) -> Path:
    """Save the current page under test-artifacts/ (kept out of git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1360, max(1000, min(int(height) + 40, 4000)))
    path = ARTIFACTS / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1360, 1000)
    return path


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

    def stop(self) -> None:
        async def close() -> None:
            await self.server.close()
            await self.fake.close()

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)
