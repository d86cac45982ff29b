"""pytest fixtures for testing ds2proxy and its plugins against real sockets.

Registered as the ``pytest11`` entry point ``ds2proxy``, so any test suite
in an environment where ds2proxy is installed can use:

- ``ds2proxy_fake_upstream``: the fake DeepSeek upstream, started, with two
  test accounts (``fake.enqueue(Scripted(answer=...))`` scripts answers);
- ``ds2proxy_factory``: ``await ds2proxy_factory(config, plugins=[...])``
  starts a real ds2proxy in front of it (``config`` deep-merges into a
  working base config; ``plugins`` adds entry points such as
  ``"hello = my_package:register"`` to the installed ones); returns a
  :class:`RunningProxy`, stopped after the test;
- ``ds2proxy_server``: one such proxy with the base config;
- ``ds2proxy_client``: a :class:`ProxyClient` for ``ds2proxy_server`` that
  sends JSON with the test key and returns status, headers and body.

Async fixtures: the suite needs pytest-asyncio (or ``asyncio_mode = auto``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from ..app import CORE, RunningServer, create_app, start_server
from ..config_store import ConfigStore
from ..core import Core
from ..doc_merge import deep_merge
from ..plugin_api.loader import GROUP, discover
from .clients import Reply
from .server import FakeDeepSeek
from .state import FakeAccount

# pytest-asyncio's decorator, so suites in its strict mode get the fixtures
# too; without it (ds2proxy installed without its test extra) pytest must
# still start, and the fixtures need ``asyncio_mode = auto``.
try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover
    async_fixture = pytest.fixture  # type: ignore[assignment]

TEST_KEY = "test-key"
ADMIN_KEY = "test-admin-key"
ACCOUNTS = (("alice@example.com", "pw-alice"), ("bob@example.com", "pw-bob"))
FAKE_DIFFICULTY = 1000


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


def base_config(fake: FakeDeepSeek) -> dict[str, Any]:
    """A working config: the test key, the fake's accounts, its URL."""
    return {
        "keys": [TEST_KEY],
        "accounts": [{"email": email, "password": pw} for email, pw in ACCOUNTS],
        "upstream": {"base_url": fake.base_url, "timeout_seconds": 10},
        "embeddings": {"provider": "testing"},
    }


def entry_points_with(extra: Iterable[str | EntryPoint]) -> list[EntryPoint]:
    """The installed plugins plus ``extra`` (``"name = module:attr"`` or EntryPoints)."""
    added = [ep if isinstance(ep, EntryPoint) else _entry_point(ep) for ep in extra]
    names = {ep.name for ep in added}
    return [*(ep for ep in discover() if ep.name not in names), *added]


def _entry_point(spec: str) -> EntryPoint:
    name, _, value = spec.partition("=")
    if not value.strip():
        raise ValueError(f"plugin spec {spec!r} is not 'name = module:attr'")
    return EntryPoint(name=name.strip(), value=value.strip(), group=GROUP)


@dataclass
class ProxyClient:
    """JSON requests to a running proxy with its test key (or the admin key)."""

    proxy: RunningProxy
    http: aiohttp.ClientSession

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, proxy: RunningProxy) -> AsyncIterator[ProxyClient]:
        """A client of ``proxy`` with its own HTTP session, closed on exit."""
        async with aiohttp.ClientSession() as http:
            yield cls(proxy, http)

    async def request(self, method: str, path: str, body: Any = None, *, admin: bool = False,
                      headers: dict[str, str] | None = None) -> Reply:
        key = self.proxy.admin_key if admin else self.proxy.key
        sent = {"Authorization": f"Bearer {key}", **(headers or {})}
        async with self.http.request(method, self.proxy.url + path, headers=sent,
                                     json=body) as resp:
            return Reply(resp.status, CIMultiDict(resp.headers), await resp.read())

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.request("POST", path, body, **kwargs)

    async def put(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.request("PUT", path, body, **kwargs)


@dataclass
class RunningProxy:
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


ProxyFactory = Callable[..., Awaitable[RunningProxy]]


@async_fixture
async def ds2proxy_fake_upstream() -> AsyncIterator[FakeDeepSeek]:
    """The fake DeepSeek upstream with the test accounts."""
    async for fake in running_fake():
        yield fake


@async_fixture
async def ds2proxy_factory(ds2proxy_fake_upstream: FakeDeepSeek, tmp_path: Path
                           ) -> AsyncIterator[ProxyFactory]:
    """``await ds2proxy_factory({"runtime": {...}}, plugins=[...])`` starts a
    server with that config (and those extra plugin entry points)."""
    running: list[RunningServer] = []

    async def make(overrides: dict | None = None, *, admin_key: str = ADMIN_KEY,
                   plugins: Iterable[str | EntryPoint] = ()) -> RunningProxy:
        doc = deep_merge(base_config(ds2proxy_fake_upstream), overrides or {})
        path = tmp_path / f"config-{len(running)}.json"
        path.write_text(json.dumps(doc))
        store = ConfigStore.from_sources(str(path), {})
        extra = list(plugins)
        app = create_app(store, admin_key=admin_key,
                         plugins=entry_points_with(extra) if extra else None)
        server = await start_server(app)
        running.append(server)
        return RunningProxy(server.url, TEST_KEY, admin_key, ds2proxy_fake_upstream, app,
                            store, path, server)

    try:
        yield make
    finally:
        for server in reversed(running):
            await server.close()


@async_fixture
async def ds2proxy_server(ds2proxy_factory: ProxyFactory) -> RunningProxy:
    """A proxy with the base config and the installed plugins."""
    return await ds2proxy_factory()


@async_fixture
async def ds2proxy_client(ds2proxy_server: RunningProxy) -> AsyncIterator[ProxyClient]:
    """A client of ``ds2proxy_server``."""
    async with ProxyClient.open(ds2proxy_server) as client:
        yield client
