"""Shared test fixtures: the recorded fixtures' location, and the fake
DeepSeek upstream and a real ds2proxy server in front of it, which come from
the project's own pytest plugin (:mod:`ds2proxy.testing.pytest_plugin`)
under the short names these tests use.

Sync SDK clients must not block the event loop the server runs on: call them
through ``await asyncio.to_thread(...)`` (or use the async clients).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ds2proxy.testing import FakeDeepSeek
from ds2proxy.testing.pytest_plugin import (  # noqa: F401 - re-exported to the tests
    ACCOUNTS,
    ADMIN_KEY,
    FAKE_DIFFICULTY,
    TEST_KEY,
    ProxyFactory,
    base_config,
    merge,
    running_fake,
)
from ds2proxy.testing.pytest_plugin import RunningProxy as Proxy

REPO = Path(__file__).resolve().parents[1]
# The shared folder sits beside the checkout (CI has it there too).
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"recorded fixtures not found beside the checkout: {FIXTURES}")
    return FIXTURES


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeDeepSeek]:
    """The fake upstream; a test module overrides this fixture to run a
    misbehaving subclass, and every proxy fixture then fronts that one."""
    async for fake in running_fake():
        yield fake


@pytest.fixture
def ds2proxy_fake_upstream(fake_upstream: FakeDeepSeek) -> FakeDeepSeek:
    return fake_upstream


@pytest.fixture
async def proxy_factory(ds2proxy_factory: ProxyFactory) -> ProxyFactory:
    return ds2proxy_factory


@pytest.fixture
async def proxy(ds2proxy_server: Proxy) -> Proxy:
    return ds2proxy_server
