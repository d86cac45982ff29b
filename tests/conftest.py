"""Shared test fixtures: the recorded fixtures' location, the fake DeepSeek
upstream, and a real ds2proxy server on a real port in front of it.

Sync SDK clients must not block the event loop the server runs on: call them
through ``await asyncio.to_thread(...)`` (or use the async clients).
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ds2proxy.app import CORE, RunningServer, create_app, start_server
from ds2proxy.config_store import ConfigStore
from ds2proxy.core import Core
from ds2proxy.testing import FakeAccount, FakeDeepSeek

REPO = Path(__file__).resolve().parents[1]
# The shared folder sits beside the checkout (CI has it there too).
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"

TEST_KEY = "test-key"
ADMIN_KEY = "test-admin-key"
ACCOUNTS = (("alice@example.com", "pw-alice"), ("bob@example.com", "pw-bob"))
FAKE_DIFFICULTY = 1000


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"recorded fixtures not found beside the checkout: {FIXTURES}")
    return FIXTURES


async def running_fake(kind: type[FakeDeepSeek] = FakeDeepSeek) -> AsyncIterator[FakeDeepSeek]:
    """A started fake upstream of ``kind`` (a FakeDeepSeek subclass that
    misbehaves on purpose) with the test accounts, closed afterwards."""
    fake = kind([FakeAccount(pw, email=email) for email, pw in ACCOUNTS],
                difficulty=FAKE_DIFFICULTY)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeDeepSeek]:
    async for fake in running_fake():
        yield fake


@dataclass
class Proxy:
    """A running ds2proxy: its URL, a managed API key, and its insides."""

    url: str
    key: str
    admin_key: str
    fake: FakeDeepSeek
    app: web.Application
    store: ConfigStore
    config_path: Path
    server: RunningServer

    @property
    def core(self) -> Core:
        return self.app[CORE]

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **extra}


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base`` (dicts merge, the rest replaces)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def base_config(fake: FakeDeepSeek) -> dict[str, Any]:
    return {
        "keys": [TEST_KEY],
        "accounts": [{"email": email, "password": pw} for email, pw in ACCOUNTS],
        "upstream": {"base_url": fake.base_url, "timeout_seconds": 10},
        "embeddings": {"provider": "testing"},
    }


ProxyFactory = Callable[..., Awaitable[Proxy]]


@pytest.fixture
async def proxy_factory(fake_upstream: FakeDeepSeek, tmp_path: Path
                        ) -> AsyncIterator[ProxyFactory]:
    """``await proxy_factory({"runtime": {...}})`` starts a server with that config."""
    running: list[RunningServer] = []

    async def make(overrides: dict | None = None, *, admin_key: str = ADMIN_KEY) -> Proxy:
        doc = merge(base_config(fake_upstream), overrides or {})
        path = tmp_path / f"config-{len(running)}.json"
        path.write_text(json.dumps(doc))
        store = ConfigStore.from_sources(str(path), {})
        app = create_app(store, admin_key=admin_key)
        server = await start_server(app)
        running.append(server)
        return Proxy(server.url, TEST_KEY, admin_key, fake_upstream, app, store, path, server)

    try:
        yield make
    finally:
        for server in reversed(running):
            await server.close()


@pytest.fixture
async def proxy(proxy_factory: ProxyFactory) -> Proxy:
    return await proxy_factory()
