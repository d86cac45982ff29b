"""The whole plugin API, in one place.

A dialect plugin is a distribution that declares an entry point in the group
``ds2proxy.plugins``, naming a function ``register(api: PluginAPI) -> None``.
It is called once at start-up. Through ``api`` a plugin may:

- ``api.route(method, path, handler, errors=..., when=None)`` — serve a
  route. The handler is ``async (aiohttp.web.Request) -> StreamResponse``.
  Any :class:`ds2proxy.errors.ProxyError` it raises is rendered with
  ``errors`` (one of ``api.errors.openai`` / ``anthropic`` / ``google`` /
  ``ollama`` or a
  function of its own), unexpected exceptions become a 500 in that shape.
  ``when`` (a predicate on the request) lets two plugins share a method and
  path, written identically: a request goes to the first plugin whose
  predicate accepts it, else to the one registered without ``when``
  (e.g. ``GET /v1/models`` answers Google clients in Google's shape).
- use ``api.core`` (:class:`ds2proxy.core.Core`):
  ``read_json(request)`` (authenticates first if the handler has not, so
  no body is read for an unknown caller), ``authenticate(request,
  implied=None) -> Caller`` (``implied``: a configured key to assume when
  the request sends none),
  ``resolve_model(name, family=…) -> ResolvedModel``,
  ``async with turn(chat_request, caller) as turn:`` (then
  ``api.relay`` below to stream it, ``turn.events()`` for the
  :mod:`ds2proxy.canonical` events one by one, or
  ``await turn.collect()``; ``turn.id``, ``turn.created``,
  ``turn.prompt_tokens``), ``admit_model(caller, name)`` and
  ``note_usage(model=…, prompt_tokens=…)`` for routes that run no turn (a
  named key's model list and quota; the request log's figures),
  ``await prompt_tokens(chat_request)`` for count-tokens routes,
  ``sse(request)`` / ``json_array(request)`` / ``ndjson(request, heartbeat)``
  for stream writers, ``embeddings(dimensions)`` for the configured
  embeddings provider (None when off), and
  ``config`` (read-only settings).
- ``await api.relay(writer, turn, renderer)`` — stream a turn:
  the one relay every dialect uses. ``renderer`` follows
  :class:`ds2proxy.relay.Renderer`: ``frames(event)`` (the frames of one
  canonical event), ``error(error)`` (the in-band error frames, any
  terminator included) and ``end()`` (the closing frames, e.g. ``[DONE]``);
  a frame is a JSON-able payload, or ``(event name, payload)`` for a named
  SSE event. The relay owns pacing and keep-alives, writes the frames of
  one event together, ends with the writer's terminator, and decides the
  error path: a failure before anything was sent raises (the route answers
  with a plain HTTP error in its ``errors`` shape), a later one is written
  in-band and then raised, so the route records it once either way.
- read ``api.settings``: the plugin's own section of the config (the object
  under ``plugins.<name>``), empty when absent.

A plugin never talks to the upstream, never touches accounts and never
parses DeepSeek frames. A plugin that fails to import or register is logged
with its name and error and leaves no route behind; the server still starts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import SimpleNamespace
from typing import Any

import orjson
from aiohttp import web

from . import request_record
from .errors import ProxyError
from .formats.errors import (
    ErrorStyle,
    anthropic_error,
    google_error,
    ollama_error,
    openai_error,
)
from .relay import Renderer, relay
from .sse import STREAM_KEY, ClientGone

log = logging.getLogger("ds2proxy.plugins")

__all__ = ["PluginAPI", "PluginInfo", "Renderer", "relay", "wrap_handler", "request_ended"]

GROUP = "ds2proxy.plugins"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Predicate = Callable[[web.Request], bool]


@dataclass
class PluginInfo:
    """What /admin/plugins reports: name, version, routes, or the load error."""

    name: str
    module: str
    version: str = ""
    routes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def loaded(self) -> bool:
        return not self.error


class PluginAPI:
    errors = SimpleNamespace(openai=openai_error, anthropic=anthropic_error, google=google_error,
                             ollama=ollama_error)
    relay = staticmethod(relay)

    def __init__(self, core: Any, name: str) -> None:
        self.core = core
        self.name = name
        self.settings: dict[str, Any] = dict(
            (core.store.snapshot().get("plugins") or {}).get(name) or {})
        self._routes: list[tuple[str, str, Handler, Predicate | None]] = []

    def route(self, method: str, path: str, handler: Handler, *, errors: ErrorStyle,
              when: Predicate | None = None) -> None:
        self._routes.append((method.upper(), path,
                             wrap_handler(handler, errors, self.core, self.name), when))


def wrap_handler(handler: Handler, errors: ErrorStyle, core: Any, family: str = "") -> Handler:
    """Render ProxyErrors in the route's shape; every request ends in
    :func:`request_ended`, the one place its outcome is recorded (monitor,
    usage record, metrics, the request log line), disconnects included."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        core.monitor.request_started()
        record = _open_record(request, family)
        token = request_record.CURRENT.set(record)
        failure: ProxyError | None = None
        status = request_record.CLIENT_CLOSED
        try:
            try:
                await core.admit_shared(request)
                response = await handler(request)
            except ProxyError as exc:
                failure = exc
                if exc.account:
                    log.warning("%s failed: %s", request.path, exc.operator_message)
                response = await _error_response(request, errors, exc)
            except ClientGone:
                log.info("client went away during %s", request.path)
                _note_error(record, ProxyError("the client closed the connection",
                                               code="client_closed"))
                response = request[STREAM_KEY].response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except Exception as exc:
                log.exception("unhandled error in %s", request.path)
                failure = ProxyError(f"internal error: {type(exc).__name__}")
                response = await _error_response(request, errors, failure)
            status = request_record.CLIENT_CLOSED if record.error_code == "client_closed" \
                else response.status
            return response
        finally:
            request_record.CURRENT.reset(token)
            request_ended(core, request, record, failure, status)

    return wrapped


def _open_record(request: web.Request, family: str) -> request_record.RequestRecord:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    return request_record.RequestRecord(request_id=request.get(request_record.REQUEST_ID_KEY)
                                        or request_record.request_id_for(request),
                                        family=family, route=route, method=request.method)


def _note_error(record: request_record.RequestRecord, exc: ProxyError) -> None:
    record.error_code = exc.code
    record.error_message = exc.message[:300]


def request_ended(core: Any, request: web.Request, record: request_record.RequestRecord,
                  failure: ProxyError | None, status: int) -> None:
    """A request is over (answered, failed before or after its first byte,
    or abandoned by the client): the single point that records its outcome,
    so a failed request counts as one error however far it got."""
    if failure is not None:
        _note_error(record, failure)
        core.monitor.request_error(failure.operator_message, status=failure.status,
                                   path=request.path)
    core.monitor.request_finished()
    record.finish(status)
    core.usage.finish(record)


async def _error_response(request: web.Request, errors: ErrorStyle,
                          exc: ProxyError) -> web.StreamResponse:
    stream = request.get(STREAM_KEY)
    if stream is not None and stream.prepared:
        # Headers are gone already: the plugin's in-band error was the answer.
        log.warning("error after the stream began on %s: %s", request.path, exc.message)
        return await stream.finish()
    return with_request_id(errors(exc), request.get(request_record.REQUEST_ID_KEY, ""))


def with_request_id(response: web.Response, request_id: str) -> web.Response:
    """The error body names the request id inside its ``error`` object. A
    shape whose error is a bare string (Ollama's) stays exactly as its
    clients expect; the ``X-Request-Id`` header still names the request."""
    if not request_id or not isinstance(response.body, bytes):
        return response
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return response
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return response
    body["error"]["request_id"] = request_id
    response.body = orjson.dumps(body)
    return response


def discover(group: str = GROUP) -> list[EntryPoint]:
    return sorted(entry_points(group=group), key=lambda ep: ep.name)


class RouteTable:
    """Routes of all plugins; a shared method + path becomes one dispatcher."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], list[tuple[Predicate | None, Handler]]] = {}

    def clashes(self, routes: list[tuple[str, str, Handler, Predicate | None]]) -> list[str]:
        """Routes another plugin already serves unconditionally."""
        return [f"{m} {p}" for m, p, _, when in routes if when is None and any(
            w is None for w, _ in self._routes.get((m, p), []))]

    def add(self, method: str, path: str, handler: Handler, when: Predicate | None) -> None:
        self._routes.setdefault((method, path), []).append((when, handler))

    def mount(self, app: web.Application) -> None:
        for (method, path), handlers in self._routes.items():
            app.router.add_route(method, path, _dispatcher(handlers))


def _dispatcher(handlers: list[tuple[Predicate | None, Handler]]) -> Handler:
    if len(handlers) == 1:
        return handlers[0][1]
    conditional = [(w, h) for w, h in handlers if w is not None]
    fallback = next((h for w, h in handlers if w is None), None)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        for when, handler in conditional:
            if when(request):
                return await handler(request)
        if fallback is None:
            raise web.HTTPNotFound()
        return await fallback(request)

    return dispatch


def load_plugins(app: web.Application, core: Any, eps: list[EntryPoint] | None = None
                 ) -> list[PluginInfo]:
    """Load every plugin; a broken one is reported and skipped."""
    infos: list[PluginInfo] = []
    table = RouteTable()
    for ep in discover() if eps is None else eps:
        info = PluginInfo(name=ep.name, module=ep.value,
                          version=ep.dist.version if ep.dist else "")
        try:
            register = ep.load()
            api = PluginAPI(core, ep.name)
            register(api)
            clash = table.clashes(api._routes)
            if clash:
                raise ValueError(f"routes already served by another plugin: {', '.join(clash)}")
        except Exception as exc:  # a plugin must never take the server down
            info.error = f"{type(exc).__name__}: {exc}"
            log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, info.error)
            infos.append(info)
            continue
        for method, path, handler, when in api._routes:
            table.add(method, path, handler, when)
            info.routes.append(f"{method} {path}" + (" (conditional)" if when else ""))
        log.info("plugin %s %s loaded: %d routes", ep.name, info.version, len(info.routes))
        infos.append(info)
    table.mount(app)
    return infos
