"""The whole plugin API, in one place.

A dialect plugin is a distribution that declares an entry point in the group
``ds2proxy.plugins``, naming a function ``register(api: PluginAPI) -> None``.
It is called once at start-up. Through ``api`` a plugin may:

- ``api.route(method, path, handler, errors=...)`` — serve a route. The
  handler is ``async (aiohttp.web.Request) -> aiohttp.web.StreamResponse``.
  Any :class:`ds2proxy.errors.ProxyError` it raises is rendered with
  ``errors`` (one of ``api.errors.openai`` / ``anthropic`` / ``google`` or a
  function of its own), unexpected exceptions become a 500 in that shape.
- use ``api.core`` (:class:`ds2proxy.core.Core`):
  ``read_json(request)``, ``authenticate(request) -> Caller``,
  ``resolve_model(name, family=…) -> ResolvedModel``,
  ``start_turn(chat_request, caller) -> Turn`` (then ``turn.events()`` for a
  stream of :mod:`ds2proxy.canonical` events, or ``await turn.collect()``),
  ``sse(request)`` / ``json_array(request)`` for stream writers, and
  ``config`` (read-only settings).
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

from aiohttp import web

from .errors import ProxyError
from .formats.errors import ErrorStyle, anthropic_error, google_error, openai_error
from .sse import STREAM_KEY, ClientGone

log = logging.getLogger("ds2proxy.plugins")

GROUP = "ds2proxy.plugins"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    errors = SimpleNamespace(openai=openai_error, anthropic=anthropic_error, google=google_error)

    def __init__(self, core: Any, name: str) -> None:
        self.core = core
        self.name = name
        self.settings: dict[str, Any] = dict(
            (core.store.snapshot().get("plugins") or {}).get(name) or {})
        self._routes: list[tuple[str, str, Handler]] = []

    def route(self, method: str, path: str, handler: Handler, *, errors: ErrorStyle) -> None:
        self._routes.append((method.upper(), path, wrap_handler(handler, errors, self.core)))


def wrap_handler(handler: Handler, errors: ErrorStyle, core: Any) -> Handler:
    """Render ProxyErrors in the route's shape; count requests for the monitor."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        core.monitor.request_started()
        try:
            return await handler(request)
        except ProxyError as exc:
            core.monitor.request_error(exc.message, status=exc.status, path=request.path)
            return await _error_response(request, errors, exc)
        except ClientGone:
            log.info("client went away during %s", request.path)
            return request[STREAM_KEY].response
        except web.HTTPException:
            raise
        except Exception as exc:
            log.exception("unhandled error in %s", request.path)
            err = ProxyError(f"internal error: {type(exc).__name__}")
            core.monitor.request_error(err.message, status=500, path=request.path)
            return await _error_response(request, errors, err)
        finally:
            core.monitor.request_finished()

    return wrapped


async def _error_response(request: web.Request, errors: ErrorStyle,
                          exc: ProxyError) -> web.StreamResponse:
    stream = request.get(STREAM_KEY)
    if stream is not None and stream.prepared:
        # Headers are gone already: the plugin's in-band error was the answer.
        log.warning("error after the stream began on %s: %s", request.path, exc.message)
        return await stream.finish()
    return errors(exc)


def discover(group: str = GROUP) -> list[EntryPoint]:
    return sorted(entry_points(group=group), key=lambda ep: ep.name)


def load_plugins(app: web.Application, core: Any, eps: list[EntryPoint] | None = None
                 ) -> list[PluginInfo]:
    """Load every plugin; a broken one is reported and skipped."""
    infos: list[PluginInfo] = []
    taken: set[tuple[str, str]] = set()
    for ep in discover() if eps is None else eps:
        info = PluginInfo(name=ep.name, module=ep.value,
                          version=ep.dist.version if ep.dist else "")
        try:
            register = ep.load()
            api = PluginAPI(core, ep.name)
            register(api)
            clash = [f"{m} {p}" for m, p, _ in api._routes if (m, p) in taken]
            if clash:
                raise ValueError(f"routes already served by another plugin: {', '.join(clash)}")
        except Exception as exc:  # a plugin must never take the server down
            info.error = f"{type(exc).__name__}: {exc}"
            log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, info.error)
            infos.append(info)
            continue
        for method, path, handler in api._routes:
            app.router.add_route(method, path, handler)
            taken.add((method, path))
            info.routes.append(f"{method} {path}")
        log.info("plugin %s %s loaded: %d routes", ep.name, info.version, len(info.routes))
        infos.append(info)
    return infos
