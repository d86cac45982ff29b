"""The core services a plugin may use, gathered in one object.

:class:`Core` owns the live config, the model catalogue, the account pool,
the upstream client and the request monitor, and keeps them in step when the
config changes (hot reload). Plugins never see it: they get a
:class:`ds2proxy.plugin_api.PluginContext`, which calls the request
services below on their behalf.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager, nullcontext
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from . import request_record
from .auth import Caller, authenticate, extract_credential
from .body import read_json_object
from .canonical import ChatRequest, ResolvedModel
from .captures import CaptureBuffer, redact_text
from .config import Config
from .config_store import ConfigStore
from .embeddings import EmbeddingProvider, HeldEmbeddings
from .errors import InvalidRequest, PermissionDenied, ProxyError
from .health import HealthTracker
from .keyring import PASS_THROUGH
from .limits import KeyLimiter, estimate_tokens
from .metrics import Metrics
from .models import ModelCatalog
from .monitor import Monitor
from .ndjson import Heartbeat, NDJSONWriter
from .passthrough import VerifiedTokens, needs_check
from .pipeline import Turn
from .providers.embeddings_engine import engine_for
from .providers.metrics import ProviderMetrics
from .providers.registry import Providers
from .providers.routed import RoutedTurn
from .tokens import warm_up
from .scheduler import AccountPool
from .live_streams import LiveStreams
from .sse import JSONArrayWriter, SSEWriter
from .state import wiring
from .state.leases import RedisLeases
from .state.redis_link import RedisLink
from .state.tokens import SharedTokens
from .turn_text import estimate_prompt_tokens
from .upstream.cleanup import SessionJanitor
from .upstream.client import DeepSeekClient
from .upstream.proxies import ProxySessions
from .upstream.credentials import TokenKeeper
from .upstream.keepalive import BoundedKeepAlive
from .usage_recorder import UsageRecorder

log = logging.getLogger("ds2proxy.core")

# The authenticated caller, kept on the request (typed key where aiohttp has them).
CALLER: Any = (web.RequestKey("ds2proxy.caller", Caller) if hasattr(web, "RequestKey")
               else "ds2proxy.caller")

SHARED_ADMITTED = "ds2proxy.shared_admitted"


class Core:
    def __init__(self, store: ConfigStore) -> None:
        cfg = store.config
        self.store = store
        self.models = ModelCatalog(aliases=cfg.model_aliases, claude_mapping=cfg.claude_mapping,
                                   family_fallback=cfg.models.family_fallback)
        # Shared state (leases, tokens, stored responses) when state.backend is redis.
        self.link: RedisLink | None = RedisLink(cfg.state) if cfg.state.shared else None
        self.backend = wiring.backend_for(self)
        self.state = self.backend.records
        self.shared_responses = self.backend.stored_responses(
            lambda: self.config.responses.store_ttl_seconds)
        self.pool = AccountPool(cfg.accounts, cfg.runtime, HealthTracker(cfg.health, self.state))
        self.monitor = Monitor()
        self.passthrough = VerifiedTokens()
        self.limiter = KeyLimiter()
        self.shared_state = wiring.SharedState(self)
        self.metrics = Metrics(self)
        self.usage = UsageRecorder(self, self.limiter, self.metrics)
        self.streams = LiveStreams()  # ended in-band at shutdown (app.end_streams_before_exit)
        self.providers = Providers(cfg, self.models)
        ProviderMetrics(self.metrics.registry, self.providers)
        self.captures = CaptureBuffer(cfg.dev_captures.enabled, cfg.dev_captures.limit,
                                      cfg.dev_captures.max_body_bytes)
        self.http: aiohttp.ClientSession | None = None
        self.client: DeepSeekClient
        self.keeper: TokenKeeper
        self.janitor: SessionJanitor
        store.subscribe(self._apply)
        wiring.attach(self)

    @property
    def config(self) -> Config:
        return self.store.config

    def _apply(self, cfg: Config) -> None:
        """Hot reload: new limits, accounts, aliases take effect for the next request."""
        self.pool.configure(cfg.accounts, cfg.runtime)
        self.pool.configure_health(cfg.health)
        self.models.configure(aliases=cfg.model_aliases, claude_mapping=cfg.claude_mapping,
                              family_fallback=cfg.models.family_fallback)
        self.captures.configure(enabled=cfg.dev_captures.enabled, limit=cfg.dev_captures.limit,
                                max_body_bytes=cfg.dev_captures.max_body_bytes)
        self.providers.configure(cfg)
        if self.http is not None:
            self.client.configure(cfg.upstream)
            if isinstance(self.http.connector, BoundedKeepAlive):
                self.http.connector.keep_idle = cfg.upstream.keepalive_connections
            self.proxies.retire(a.proxy for a in cfg.accounts if a.proxy)

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: one upstream ClientSession for the app's
        life (plus one per account proxy), and the saved account health.

        Its connector has no connection cap (aiohttp's default is 100): the
        account pool already bounds concurrent turns, and a turn left waiting
        for a pooled connection would stall silently inside the connector.
        Idle connections kept for reuse are capped (``keepalive_connections``).
        """
        await self.shared_state.before_link()
        connector = BoundedKeepAlive(keep_idle=self.config.upstream.keepalive_connections)
        self.http = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        self.proxies = ProxySessions(self.http)
        self.client = DeepSeekClient(self.http, self.config.upstream, self.captures,
                                     self.proxies, self.pool.proxy_for_token)
        self.metrics.instrument(self.client)
        await self.usage.open()
        self.keeper = TokenKeeper(self.client, self.store, self.pool.health,
                                  SharedTokens(self.link) if self.link is not None else None)
        self.janitor = SessionJanitor(self.client)
        await warm_up()
        if self.link is not None:
            await self.link.start()
            self.pool.share(RedisLeases(self.link, self.config.state.lease_ttl_seconds))
        try:
            yield
        finally:
            try:
                await self.shared_state.close()
                if self.pool.shared is not None:
                    await self.pool.shared.close()
                await self.store.settled()  # a write begun is finished before exit
                await self.janitor.close()
                await self.proxies.close()
                await self.providers.close()
                await self.http.close()
                self.http = None
                await self.state.close()
            finally:
                await self.usage.close()
                if self.link is not None:
                    await self.link.close()

    # -- what handlers call ------------------------------------------------------

    async def read_json(self, request: web.Request) -> dict[str, Any]:
        """The request body as a JSON object, or a 400/413 ProxyError.

        The caller is authenticated first (here, if the handler has not):
        an unknown caller never makes the server hold a large body. A
        pass-through token is checked with the upstream before a large body
        is read, since any string passes as one until then.
        """
        caller = request.get(CALLER) or self.authenticate(request)
        await self.limiter.settle()
        if not caller.managed and needs_check(request):
            await self.passthrough.verify(self.client, caller)
        return await read_json_object(request, self.config.runtime.max_body_bytes,
                                      keep=self._keep_body)

    def _keep_body(self, raw: bytearray) -> None:
        """With ``usage.log_bodies``, the request log keeps the body, cut to
        ``usage.log_body_max_bytes`` and with credentials blanked as in captures."""
        settings = self.config.usage
        record = request_record.current()
        if settings.log_bodies and record is not None:
            text = bytes(raw[:settings.log_body_max_bytes]).decode("utf-8", errors="replace")
            record.request_body = redact_text(text)

    async def admit_shared(self, request: web.Request) -> None:
        """With shared state, a named key's cluster-wide per-minute limit
        (one atomic Redis call) before the handler runs; ``authenticate``
        then does not count the request again."""
        if self.limiter.shared is None:
            return
        key = self.config.key_named(extract_credential(request, self.config.key_secrets))
        if key is None or key.disabled or key.expired():
            return  # authenticate refuses it (or it is pass-through)
        record = request_record.current()
        if record is not None:
            record.key_name, record.key_ref = key.name, key.ref
        # A POST may run a turn: a key with a concurrent limit is counted in
        # its rpm window with its slot, in one call (KeyLimiter.hold).
        await self.limiter.admit_shared(key, defer=request.method == "POST")
        request[SHARED_ADMITTED] = True

    def authenticate(self, request: web.Request, *, implied: str | None = None) -> Caller:
        """The caller; ``implied`` is a configured key assumed when none is sent.
        A named key is admitted against its request limits here; an implied
        one, with shared state, in the cluster's window at the next
        ``read_json`` or ``turn`` (the shared check is asynchronous)."""
        admitted = bool(request.get(SHARED_ADMITTED))
        owed = (implied is not None and not admitted and self.limiter.shared is not None
                and not extract_credential(request, self.config.key_secrets))
        limiter = None if admitted or owed else self.limiter
        try:
            caller = authenticate(request, self.config, implied=implied, limiter=limiter)
        except ProxyError:
            self._name_refused_key(request, implied)
            raise
        if owed and caller.key_name:  # an implied key: counted in the shared window
            self.limiter.owe(self.config.key_named(caller.credential))
            request[SHARED_ADMITTED] = True  # by settle, before the body is read
        request[CALLER] = caller
        record = request_record.current()
        if record is not None:
            record.key_name = caller.key_name or PASS_THROUGH
            record.key_ref = caller.identity if caller.key_name else ""
        return caller

    def _name_refused_key(self, request: web.Request, implied: str | None) -> None:
        """A named key refused at the door (disabled, expired, over its rate)
        is still the key that asked: its row, rollups and metrics say so."""
        record = request_record.current()
        sent = extract_credential(request, self.config.key_secrets) or implied or ""
        key = self.config.key_named(sent)
        if record is not None and key is not None:
            record.key_name, record.key_ref = key.name, key.ref

    def resolve_model(self, name: Any, *, family: str | None = None) -> ResolvedModel:
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("'model' is required", param="model")
        record = request_record.current()
        if record is not None:
            record.model = name[:100]
        resolved = (self.providers.router.resolve(name, family)
                    or self.models.resolve(name, family=family))
        if record is not None:
            record.native_model = resolved.native
        return resolved

    def provider_models(self) -> list[tuple[str, str]]:
        """``(model id, provider)`` of the provider models the families list."""
        return self.providers.listed()

    def model_owner(self, name: str) -> str | None:
        """The provider that answers ``name`` first (None: the pool)."""
        return self.providers.owner(name)

    def key_of(self, caller: Caller | None) -> Any:
        """The caller's named key; None for a pass-through token or no caller."""
        return self.config.key_named(caller.credential) if caller and caller.key_name else None

    def admit_model(self, caller: Caller, *names: str) -> Any:
        """The caller's named key (None for pass-through) after its model and
        daily-token checks: 403 when no name is allowed, 429 over the quota.
        Routes that run no turn (embeddings) call it themselves."""
        key = self.key_of(caller)
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

    def embeddings(self, dimensions: int | None, model: str = "",
                   caller: Caller | None = None) -> EmbeddingProvider | None:
        """The configured embeddings engine for vectors of ``dimensions`` (None:
        the engine's own size) of ``model`` (overridden by ``embeddings.model``);
        None when ``embeddings.provider`` names none. A provider's engine needs
        a ``caller`` with one of the configured keys (else 403). A key with a
        concurrency limit spends one of its slots on each call, as a turn does."""
        engine = engine_for(self, dimensions, model, caller)
        key = self.key_of(caller)
        if engine is None or key is None or not key.limits.concurrent:
            return engine
        return HeldEmbeddings(engine, lambda: self.limiter.hold(key))

    async def prompt_tokens(self, chat: ChatRequest) -> int:
        """Prompt tokens a turn for ``chat`` would report (for count_tokens
        routes): the DeepSeek V4 tokens of the text it would send, to the
        web chat or to the provider that answers the model first."""
        await self.limiter.settle(final=True)  # no slot: the rpm is counted alone
        provider = await self.providers.prompt_tokens(chat, self.config)
        if provider is not None:
            return provider
        return await estimate_prompt_tokens(chat, self.config)

    @asynccontextmanager
    async def turn(self, chat: ChatRequest, caller: Caller
                   ) -> AsyncIterator[Turn | RoutedTurn]:
        """Open the upstream stream for a turn; always closed (lease released) on exit.

        Errors while opening are plain HTTP errors: nothing was sent yet. A
        routed model (``model_routes``, a provider's models) gets a turn over
        its targets, with the same interface.
        """
        await self.limiter.settle()
        key = self.admit_model(caller, chat.model.requested, chat.model.native)
        with self.streams.serving():  # a shutdown ends it with the family's error
            async with self.limiter.hold(key) if key is not None else nullcontext():
                turn = self.providers.turn_for(self, chat, caller)
                reserved = self.limiter.reserve(key, estimate_tokens(chat)) if key else 0
                unheld = request_record.hold_tokens(reserved)  # released when charged
                try:
                    await turn.open()
                    yield turn
                finally:
                    self.limiter.release(key.ref if key else "", unheld)
                    await turn.aclose()

    def sse(self, request: web.Request, *, blank_keepalive: bool = False,
            **headers: str) -> SSEWriter:
        """An SSE writer; ``blank_keepalive`` for clients that choke on comments."""
        _mark_stream()
        return self.streams.add(SSEWriter(
            request, keepalive=self.config.runtime.keepalive_seconds,
            blank_keepalive=blank_keepalive, headers=headers or None))

    def json_array(self, request: web.Request) -> JSONArrayWriter:
        _mark_stream()
        return self.streams.add(JSONArrayWriter(
            request, keepalive=self.config.runtime.keepalive_seconds))

    def ndjson(self, request: web.Request, heartbeat: Heartbeat) -> NDJSONWriter:
        """A newline-delimited JSON writer; ``heartbeat()`` is its keep-alive line."""
        _mark_stream()
        return self.streams.add(NDJSONWriter(
            request, heartbeat=heartbeat, keepalive=self.config.runtime.keepalive_seconds))


def _mark_stream() -> None:
    record = request_record.current()
    if record is not None:
        record.stream = True
