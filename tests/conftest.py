"""Shared test fixtures: the recorded fixtures' location, and the fake
DeepSeek upstream and a real ds2proxy server in front of it, which come from
the project's own pytest plugin (:mod:`ds2proxy.testing.pytest_plugin`)
under the short names these tests use.

Sync SDK clients must not block the event loop the server runs on: call them
through ``await asyncio.to_thread(...)`` (or use the async clients).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ds2proxy.doc_merge import deep_merge
from ds2proxy.testing import FakeDeepSeek
from ds2proxy.testing.pytest_plugin import (  # noqa: F401 - re-exported to the tests
    ACCOUNTS,
    ADMIN_KEY,
    FAKE_DIFFICULTY,
    TEST_KEY,
    ProxyFactory,
    base_config,
    running_fake,
)
from ds2proxy.testing.pytest_plugin import RunningProxy as Proxy
from ds2proxy.state.redis_link import RedisLink
from ds2proxy.state.settings import parse_state
from ds2proxy.testing.instances import Instances
from ds2proxy.testing.redis_server import RedisServer

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


# -- several instances on one Redis --------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port, for this test only."""
    with RedisServer() as server:
        yield server


@pytest.fixture
async def open_link(redis_server: RedisServer) -> AsyncIterator[Callable[..., Awaitable[RedisLink]]]:
    """``await open_link(db=0, prefix="ds2proxy:")``: a started link on
    ``redis_server``, one per instance a test plays; all closed afterwards."""
    links: list[RedisLink] = []

    async def make(db: int = 0, prefix: str = "ds2proxy:") -> RedisLink:
        url = f"redis://127.0.0.1:{redis_server.port}/{db}"
        link = RedisLink(parse_state({"state": {"backend": "redis", "redis_url": url,
                                                "key_prefix": prefix}}, {}))
        links.append(link)
        await link.start()
        return link

    yield make
    for link in links:
        await link.close()


def shared_config(fake: FakeDeepSeek, redis: RedisServer, overrides: dict | None = None
                  ) -> dict[str, Any]:
    """The test config with state on ``redis`` (small lease TTL, quick tests)."""
    state = {"state": {"backend": "redis", "redis_url": redis.url, "lease_ttl_seconds": 3}}
    return deep_merge(deep_merge(base_config(fake), state), overrides or {})


@pytest.fixture
async def instances(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Instances]]]:
    """``await instances(config, count)``: that many ds2proxy processes on one config."""
    made: list[Instances] = []

    async def start(config: dict[str, Any], count: int = 2) -> Instances:
        group = Instances(tmp_path, config)
        made.append(group)
        await group.start(count)
        return group

    try:
        yield start
    finally:
        for group in made:
            group.close()
