"""The core services a plugin may use, gathered in one object.

:class:`Core` owns the live config, the model catalogue, the account pool,
the upstream client and the request monitor, and keeps them in step when the
config changes (hot reload). Plugins reach it as ``api.core``; see
:mod:`ds2proxy.plugin_api` for what they may call.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, nullcontext
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from . import request_record
from .auth import Caller, authenticate
from .canonical import ChatRequest, ResolvedModel
from .captures import CaptureBuffer, redact_text
from .config import Config, ConfigStore
from .errors import InvalidRequest, PayloadTooLarge, PermissionDenied
from .limits import KeyLimiter
from .metrics import Metrics
from .jsonbody import parse_object
from .models import ModelCatalog
from .monitor import Monitor
from .pipeline import Turn, estimate_prompt_tokens
from .scheduler import AccountPool
from .sse import JSONArrayWriter, SSEWriter
from .upstream.cleanup import SessionJanitor
from .upstream.client import DeepSeekClient
from .upstream.session import TokenKeeper
from .usage_recorder import UsageRecorder

log = logging.getLogger("ds2proxy.core")

_OFF_LOOP_JSON_BYTES = 1 << 20


class Core:
    def __init__(self, store: ConfigStore) -> None:
        cfg = store.config
        self.store = store
        self.models = ModelCatalog(aliases=cfg.model_aliases, claude_mapping=cfg.claude_mapping,
                                   family_fallback=cfg.family_fallback)
        self.pool = AccountPool(cfg.accounts, cfg.runtime)
        self.monitor = Monitor()
        self.limiter = KeyLimiter()
        self.metrics = Metrics(self)
        self.usage = UsageRecorder(self, self.limiter, self.metrics)
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
        self.models.configure(aliases=cfg.model_aliases, claude_mapping=cfg.claude_mapping,
                              family_fallback=cfg.family_fallback)
        self.captures.configure(enabled=cfg.captures_enabled, limit=cfg.captures_limit,
                                max_body_bytes=cfg.captures_max_body_bytes)
        if self.http is not None:
            self.client.configure(cfg.upstream)

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: one upstream ClientSession for the app's life."""
        self.http = aiohttp.ClientSession(auto_decompress=True)
        self.client = DeepSeekClient(self.http, self.config.upstream, self.captures)
        self.metrics.instrument(self.client)
        await self.usage.open()
        self.keeper = TokenKeeper(self.client, self.store)
        self.janitor = SessionJanitor(self.client)
        try:
            yield
        finally:
            try:
                await self.janitor.close()
                await self.http.close()
                self.http = None
            finally:
                await self.usage.close()

    # -- what handlers call ------------------------------------------------------

    async def read_json(self, request: web.Request) -> dict[str, Any]:
        """The request body as a JSON object, or a 400/413 ProxyError."""
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self.config.runtime.max_body_bytes
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit") from None
        self._keep_body(raw)
        if len(raw) > _OFF_LOOP_JSON_BYTES:
            return await asyncio.to_thread(parse_object, raw)
        return parse_object(raw)

    def _keep_body(self, raw: bytes) -> None:
        """With ``usage.log_bodies``, the request log keeps the body, cut to
        ``usage.log_body_max_bytes`` and with credentials blanked as in captures."""
        settings = self.config.observe
        record = request_record.current()
        if settings.log_bodies and record is not None:
            text = raw[:settings.log_body_max_bytes].decode("utf-8", errors="replace")
            record.request_body = redact_text(text)

    def authenticate(self, request: web.Request) -> Caller:
        caller = authenticate(request, self.config, self.limiter)
        record = request_record.current()
        if record is not None:
            record.key_name = caller.key_name or request_record.PASS_THROUGH
        return caller

    def resolve_model(self, name: Any, *, family: str | None = None) -> ResolvedModel:
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("'model' is required", param="model")
        record = request_record.current()
        if record is not None:
            record.model = name[:100]
        resolved = self.models.resolve(name, family=family)
        if record is not None:
            record.native_model = resolved.native
        return resolved

    def admit_model(self, caller: Caller, *names: str) -> Any:
        """The caller's named key (None for pass-through) after its model and
        daily-token checks: 403 when no name is allowed, 429 over the quota.
        Routes that run no turn (embeddings) call it themselves."""
        key = self.config.key_named(caller.credential) if caller.key_name else None
        if key is None:
            return None
        if not key.allows_model(*names):
            raise PermissionDenied(f"API key '{key.name}' may not use model "
                                   f"'{names[0][:100]}'", code="model_not_allowed")
        self.limiter.check_tokens(key)
        return key

    def note_usage(self, *, model: str, prompt_tokens: int, completion_tokens: int = 0) -> None:
        """Usage of a route that runs no turn, for the request log and quotas."""
        record = request_record.current()
        if record is not None:
            record.model = record.model or model[:100]
            record.prompt_tokens, record.completion_tokens = prompt_tokens, completion_tokens

    def prompt_tokens(self, chat: ChatRequest) -> int:
        """Prompt tokens a turn for ``chat`` would report (for count_tokens routes)."""
        return estimate_prompt_tokens(chat, self.config)

    @asynccontextmanager
    async def turn(self, chat: ChatRequest, caller: Caller) -> AsyncIterator[Turn]:
        """Open the upstream stream for a turn; always closed (lease released) on exit.

        Errors while opening are plain HTTP errors: nothing was sent yet.
        """
        key = self.admit_model(caller, chat.model.requested, chat.model.native)
        with self.limiter.hold(key) if key is not None else nullcontext():
            turn = Turn(self, chat, caller)
            try:
                await turn.open()
                yield turn
            finally:
                await turn.aclose()

    def sse(self, request: web.Request, *, blank_keepalive: bool = False,
            **headers: str) -> SSEWriter:
        """An SSE writer; ``blank_keepalive`` for clients that choke on comments."""
        _mark_stream()
        return SSEWriter(request, keepalive=self.config.runtime.keepalive_seconds,
                         blank_keepalive=blank_keepalive, headers=headers or None)

    def json_array(self, request: web.Request) -> JSONArrayWriter:
        _mark_stream()
        return JSONArrayWriter(request, keepalive=self.config.runtime.keepalive_seconds)


def _mark_stream() -> None:
    record = request_record.current()
    if record is not None:
        record.stream = True
