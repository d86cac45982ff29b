"""The core services a plugin may use, gathered in one object.

:class:`Core` owns the live config, the model catalogue, the account pool,
the upstream client and the request monitor, and keeps them in step when the
config changes (hot reload). Plugins reach it as ``api.core``; see
:mod:`ds2proxy.plugin_api` for what they may call.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from .auth import Caller, authenticate
from .canonical import ChatRequest, ResolvedModel
from .captures import CaptureBuffer
from .config import Config, ConfigStore
from .errors import InvalidRequest, PayloadTooLarge
from .health import HealthTracker
from .health.tracker import NAMESPACE as HEALTH_NAMESPACE
from .models import ModelCatalog
from .monitor import Monitor
from .pipeline import Turn, estimate_prompt_tokens
from .scheduler import AccountPool
from .sse import JSONArrayWriter, SSEWriter
from .state import open_store
from .upstream.cleanup import SessionJanitor
from .upstream.client import DeepSeekClient
from .upstream.proxies import ProxySessions
from .upstream.session import TokenKeeper

log = logging.getLogger("ds2proxy.core")

_OFF_LOOP_JSON_BYTES = 1 << 20


class Core:
    def __init__(self, store: ConfigStore) -> None:
        cfg = store.config
        self.store = store
        self.models = ModelCatalog(aliases=cfg.model_aliases, claude_mapping=cfg.claude_mapping,
                                   family_fallback=cfg.family_fallback)
        self.state = open_store(store.path)
        self.pool = AccountPool(cfg.accounts, cfg.runtime, HealthTracker(cfg.health, self.state))
        self.monitor = Monitor()
        self.captures = CaptureBuffer(cfg.captures_enabled, cfg.captures_limit,
                                      cfg.captures_max_body_bytes)
        self.http: aiohttp.ClientSession | None = None
        self.client: DeepSeekClient
        self.keeper: TokenKeeper
        self.janitor: SessionJanitor
        store.subscribe(self._apply)

    @property
    def config(self) -> Config:
        return self.store.config

    def _apply(self, cfg: Config) -> None:
        """Hot reload: new limits, accounts, aliases take effect for the next request."""
        self.pool.configure(cfg.accounts, cfg.runtime)
        self.pool.configure_health(cfg.health)
        self.models.configure(aliases=cfg.model_aliases, claude_mapping=cfg.claude_mapping,
                              family_fallback=cfg.family_fallback)
        self.captures.configure(enabled=cfg.captures_enabled, limit=cfg.captures_limit,
                                max_body_bytes=cfg.captures_max_body_bytes)
        if self.http is not None:
            self.client.configure(cfg.upstream)
            self.proxies.retire(a.proxy for a in cfg.accounts if a.proxy)

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: one upstream ClientSession for the app's life."""
        self.pool.health.load(await self.state.load(HEALTH_NAMESPACE))
        self.pool.health.forget_except(s.identifier for s in self.pool.accounts())
        self.http = aiohttp.ClientSession(auto_decompress=True)
        self.proxies = ProxySessions(self.http)
        self.client = DeepSeekClient(self.http, self.config.upstream, self.captures,
                                     self.proxies, self.pool.proxy_for_token)
        self.keeper = TokenKeeper(self.client, self.store, self.pool.health)
        self.janitor = SessionJanitor(self.client)
        try:
            yield
        finally:
            await self.janitor.close()
            await self.proxies.close()
            await self.http.close()
            self.http = None
            await self.state.close()

    # -- what handlers call ------------------------------------------------------

    async def read_json(self, request: web.Request) -> dict[str, Any]:
        """The request body as a JSON object, or a 400/413 ProxyError."""
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self.config.runtime.max_body_bytes
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit") from None
        if not raw.strip():
            raise InvalidRequest("request body is empty; expected a JSON object")
        try:
            if len(raw) > _OFF_LOOP_JSON_BYTES:
                body = await asyncio.to_thread(orjson.loads, raw)
            else:
                body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        return body

    def authenticate(self, request: web.Request) -> Caller:
        return authenticate(request, self.config)

    def resolve_model(self, name: Any, *, family: str | None = None) -> ResolvedModel:
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("'model' is required", param="model")
        return self.models.resolve(name, family=family)

    def prompt_tokens(self, chat: ChatRequest) -> int:
        """Prompt tokens a turn for ``chat`` would report (for count_tokens routes)."""
        return estimate_prompt_tokens(chat, self.config)

    @asynccontextmanager
    async def turn(self, chat: ChatRequest, caller: Caller) -> AsyncIterator[Turn]:
        """Open the upstream stream for a turn; always closed (lease released) on exit.

        Errors while opening are plain HTTP errors: nothing was sent yet.
        """
        turn = Turn(self, chat, caller)
        try:
            await turn.open()
            yield turn
        finally:
            await turn.aclose()

    def sse(self, request: web.Request, *, blank_keepalive: bool = False,
            **headers: str) -> SSEWriter:
        """An SSE writer; ``blank_keepalive`` for clients that choke on comments."""
        return SSEWriter(request, keepalive=self.config.runtime.keepalive_seconds,
                         blank_keepalive=blank_keepalive, headers=headers or None)

    def json_array(self, request: web.Request) -> JSONArrayWriter:
        return JSONArrayWriter(request, keepalive=self.config.runtime.keepalive_seconds)
