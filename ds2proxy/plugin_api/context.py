"""The object a plugin's ``register(api)`` receives: only what a dialect needs.

A :class:`PluginContext` serves routes, authenticates callers, reads bodies,
resolves models, runs turns and streams them, and reads the plugin's own
settings. It holds the core privately and hands out nothing that reaches
accounts, the upstream client or the config store.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..relay import EventSource, relay
from ..tokens import count_tokens_async
from ..unmatched import Claim
from .contract import (
    ERROR_STYLES,
    ChatRequest,
    Caller,
    EmbeddingProvider,
    ErrorStyle,
    ErrorStyles,
    Handler,
    Heartbeat,
    Hook,
    JSONArrayWriter,
    ListedModel,
    NativeModel,
    NDJSONWriter,
    Predicate,
    Renderer,
    ResolvedModel,
    SettingsCheck,
    SettingsListener,
    SSEWriter,
    StoredResponses,
    StreamWriter,
    Turn,
)

if TYPE_CHECKING:
    from ..core import Core
    from ..models import ModelCatalog
    from ..providers.registry import Providers as ProviderCatalogue

log = logging.getLogger("ds2proxy.plugins")

Route = tuple[str, str, Handler, Predicate | None, ErrorStyle]


class CatalogueView:
    """The model catalogue, read-only (``api.models``)."""

    def __init__(self, catalog: ModelCatalog, providers: ProviderCatalogue) -> None:
        self._catalog = catalog
        self._providers = providers

    def natives(self) -> list[NativeModel]:
        return self._catalog.natives()

    def native(self, model_id: str) -> NativeModel | None:
        return self._catalog.native(model_id)

    def listed(self) -> list[ListedModel]:
        return [ListedModel(name, native) for name, native in self._catalog.listed()]

    def aliases(self) -> dict[str, str]:
        return self._catalog.aliases()

    def configured_aliases(self) -> dict[str, str]:
        return self._catalog.configured_aliases()

    def provider_models(self) -> list[tuple[str, str]]:
        """``(model id, provider)`` of the models an upstream provider answers."""
        return self._providers.listed()

    def owner(self, name: str) -> str | None:
        """The provider that answers ``name`` first; None when the pool does."""
        return self._providers.owner(name)


class PluginContext:
    """``api``: a plugin's whole view of the server (see the package docs)."""

    errors: ErrorStyles = ERROR_STYLES

    def __init__(self, core: Core, name: str, settings: Mapping[str, Any] | None = None) -> None:
        self._core = core
        self.name = name
        self._settings: Mapping[str, Any] = MappingProxyType(dict(settings or {}))
        self.models = CatalogueView(core.models, core.providers)
        self._routes: list[Route] = []
        self._claims: list[Claim] = []
        self._names: list[tuple[str, str, bool]] = []
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._check: SettingsCheck | None = None
        self._listeners: list[SettingsListener] = []
        self._requires = ""

    # -- declarations (during register) ------------------------------------------------

    def route(self, method: str, path: str, handler: Handler, *, errors: ErrorStyle,
              when: Predicate | None = None) -> None:
        """Serve ``method path``; ProxyErrors render in ``errors``' shape.
        ``when`` lets two plugins share a route (the first that accepts wins)."""
        self._routes.append((method.upper(), path, handler, when, errors))

    def claim_paths(self, prefix: str, *, errors: ErrorStyle,
                    when: Predicate | None = None) -> None:
        """Requests under ``prefix`` that no route serves (404, 405) answer in
        ``errors``' shape; the longest claim wins, one with ``when`` only for
        the requests it accepts."""
        self._claims.append((prefix, errors, when))

    def require_api(self, version: str) -> None:
        """Declare the contract version this plugin was built for ("1.0"); a
        server that cannot honour it refuses to load the plugin."""
        self._requires = version

    def on_startup(self, hook: Hook) -> None:
        """Run ``await hook()`` once the server has started (core services up)."""
        self._startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        """Run ``await hook()`` when the server stops, before the core closes."""
        self._shutdown.append(hook)

    def check_settings(self, check: SettingsCheck) -> None:
        """Validate ``plugins.<name>``: ``check(settings)`` returns problems by
        field; any problem refuses the config write with a 400 naming it."""
        self._check = check

    def on_settings(self, listener: SettingsListener) -> None:
        """Call ``listener(settings)`` whenever ``plugins.<name>`` changes."""
        self._listeners.append(listener)

    def register_model(self, model_id: str, native: str) -> None:
        """A model id of this plugin's, served by ``native``: it resolves and
        appears in the model lists."""
        self._names.append((model_id, native, True))

    def register_alias(self, name: str, native: str) -> None:
        """Another name ``native`` answers to (resolves; not listed)."""
        self._names.append((name, native, False))

    # -- settings ------------------------------------------------------------------------

    @property
    def settings(self) -> Mapping[str, Any]:
        """This plugin's ``plugins.<name>`` object, read-only and always current."""
        return self._settings

    @property
    def default_model(self) -> str:
        """The server's ``models.default``."""
        return self._core.config.models.default

    @property
    def responses_ttl_seconds(self) -> int:
        """How long stored responses are kept (``responses.store_ttl_seconds``)."""
        return self._core.config.responses.store_ttl_seconds

    @property
    def shared_responses(self) -> StoredResponses | None:
        """The stored-response store of the state backend (Redis, shared by
        every instance, or the state file, kept across restarts); None when
        there is neither (the plugin keeps its own in memory)."""
        return self._core.shared_responses

    # -- per request ---------------------------------------------------------------------

    def authenticate(self, request: web.Request, *, implied: str | None = None) -> Caller:
        """The caller, or a 401/403/429 ProxyError. ``implied``: a configured
        key assumed when the request sends none."""
        return self._core.authenticate(request, implied=implied)

    async def read_json(self, request: web.Request) -> dict[str, Any]:
        """The body as a JSON object (the caller authenticated first), or a 400/413."""
        return await self._core.read_json(request)

    def resolve_model(self, name: object, *, family: str | None = None) -> ResolvedModel:
        """The native model serving a client's name, or a 400 ModelNotFound."""
        return self._core.resolve_model(name, family=family)

    def admit_model(self, caller: Caller, *names: str) -> None:
        """A named key's model and quota checks, for routes that run no turn."""
        self._core.admit_model(caller, *names)

    def note_usage(self, *, model: str, prompt_tokens: int, completion_tokens: int = 0) -> None:
        """Usage of a route that runs no turn, for the request log and quotas."""
        self._core.note_usage(model=model, prompt_tokens=prompt_tokens,
                              completion_tokens=completion_tokens)

    def turn(self, chat: ChatRequest, caller: Caller) -> AbstractAsyncContextManager[Turn]:
        """``async with api.turn(chat, caller) as turn``: an account, the
        upstream stream; released on every path when the block ends."""
        return self._core.turn(chat, caller)

    async def prompt_tokens(self, chat: ChatRequest) -> int:
        """The prompt tokens a turn for ``chat`` would report (count_tokens routes)."""
        return await self._core.prompt_tokens(chat)

    async def count_tokens(self, text: str) -> int:
        """DeepSeek V4 tokens of ``text`` (off the event loop when large)."""
        return await count_tokens_async(text)

    def embeddings(self, dimensions: int | None, model: str = "",
                   caller: Caller | None = None) -> EmbeddingProvider | None:
        """The configured embeddings engine for vectors of ``dimensions``
        (None: the engine's own size) of ``model``; None when none is
        configured. A provider's engine needs a ``caller`` holding one of the
        configured keys (else 403)."""
        return self._core.embeddings(dimensions, model, caller)

    def sse(self, request: web.Request, *, blank_keepalive: bool = False,
            **headers: str) -> SSEWriter:
        """An SSE writer; ``blank_keepalive`` for clients that choke on comments."""
        return self._core.sse(request, blank_keepalive=blank_keepalive, **headers)

    def json_array(self, request: web.Request) -> JSONArrayWriter:
        """A streamed JSON array writer (``[{…},{…}]``)."""
        return self._core.json_array(request)

    def ndjson(self, request: web.Request, heartbeat: Heartbeat) -> NDJSONWriter:
        """A newline-delimited JSON writer; ``heartbeat()`` is its keep-alive line."""
        return self._core.ndjson(request, heartbeat)

    async def relay(self, writer: StreamWriter, turn: Turn | EventSource,
                    renderer: Renderer) -> web.StreamResponse:
        """Stream ``turn`` through ``renderer``: the one relay every dialect uses."""
        return await relay(writer, turn, renderer)


async def run_hooks(hooks: list[tuple[str, Hook]], what: str) -> None:
    """Run plugin hooks in order; a failing hook is logged with its plugin."""
    for name, hook in hooks:
        try:
            await hook()
        except Exception:
            log.exception("plugin %s: %s hook failed", name, what)


def changed_settings(api: PluginContext, section: Mapping[str, Any]) -> bool:
    """Publish a new ``plugins.<name>`` to ``api`` and its listeners."""
    if dict(section) == dict(api._settings):
        return False
    api._settings = MappingProxyType(dict(section))
    for listener in api._listeners:
        try:
            listener(api._settings)
        except Exception:
            log.exception("plugin %s: settings listener failed", api.name)
    return True

