"""Helpers for the admin API and dashboard tests: a logged-in admin client
over real HTTP, and a config whose every secret is long enough to be
searched for in raw response bytes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import Proxy, ProxyFactory

from ds2proxy.admin import ADMIN, AdminContext

# Secrets the masking tests search for in every admin read.
LONG_KEY = "sk-live-0123456789abcdefXYZ"
PLUGIN_SECRET = "plugin-api-key-9f8e7d6c5b4a"
TOKEN_ONLY = "raw-user-token-5a4b3c2d1e0f"
STORED_TOKEN = "stored-token-aa11bb22cc33dd44"
CAROL = ("carol@example.com", "carol-password-77")


def secret_config() -> dict[str, Any]:
    """Overrides adding long keys, tokens and a plugin secret to the base config."""
    return {
        "keys": ["test-key", LONG_KEY],
        "accounts": [
            {"email": "alice@example.com", "password": "pw-alice"},
            {"email": "bob@example.com", "password": "pw-bob"},
            {"email": CAROL[0], "password": CAROL[1], "token": STORED_TOKEN},
            {"token": TOKEN_ONLY},
        ],
        "plugins": {"example": {"api_key": PLUGIN_SECRET, "endpoint": "http://example.test"}},
    }


@dataclass
class Reply:
    status: int
    raw: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return orjson.loads(self.raw)


@dataclass
class Admin:
    """An HTTP client logged in to a running proxy's admin API."""

    proxy: Proxy
    http: aiohttp.ClientSession
    token: str

    @property
    def ctx(self) -> AdminContext:
        return self.proxy.app[ADMIN]

    async def call(self, method: str, path: str, *, json: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None, auth: bool = True) -> Reply:
        sent = dict(headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {self.token if token is None else token}"
        async with self.http.request(method, self.proxy.url + path, json=json,
                                     headers=sent) as resp:
            return Reply(resp.status, await resp.read(), dict(resp.headers))

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = await self.call(method, path, **kwargs)
        assert reply.status == 200, (path, reply.status, reply.raw[:500])
        return reply.json()


async def login(http: aiohttp.ClientSession, url: str, key: str, **extra: Any) -> Reply:
    async with http.post(f"{url}/admin/login", json={"admin_key": key, **extra}) as resp:
        return Reply(resp.status, await resp.read(), dict(resp.headers))


async def admin_for(proxy: Proxy, http: aiohttp.ClientSession) -> Admin:
    reply = await login(http, proxy.url, proxy.admin_key)
    assert reply.status == 200, reply.raw
    return Admin(proxy, http, reply.json()["token"])


@pytest.fixture
async def admin(proxy: Proxy) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as http:
        yield await admin_for(proxy, http)


@pytest.fixture
async def secret_admin(proxy_factory: ProxyFactory) -> AsyncIterator[Admin]:
    proxy = await proxy_factory(secret_config())
    async with aiohttp.ClientSession() as http:
        yield await admin_for(proxy, http)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` on the event loop until it holds (fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
