"""Small plugins the contract tests load as extra entry points
(``"name = sample_plugins:register_…"``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import PluginContext

# What the lifecycle plugin saw, in order (the tests read and reset it).
EVENTS: list[str] = []


def register_lifecycle(api: PluginContext) -> None:
    async def started() -> None:
        EVENTS.append("started")

    async def broken() -> None:
        raise RuntimeError("hook exploded")

    async def stopped() -> None:
        EVENTS.append("stopped")

    async def settings(request: web.Request) -> web.Response:
        return web.json_response(dict(api.settings))

    api.on_startup(broken)
    api.on_startup(started)
    api.on_shutdown(stopped)
    api.on_settings(lambda new: EVENTS.append(f"settings:{new.get('colour')}"))
    api.check_settings(check_colour)
    api.route("GET", "/sample/settings", settings, errors=api.errors.openai)
    api.claim_paths("/sample", errors=api.errors.anthropic)


def check_colour(settings: Mapping[str, Any]) -> dict[str, str]:
    colour = settings.get("colour", "red")
    return {} if colour in ("red", "green") else {"colour": "must be red or green"}


def register_future(api: PluginContext) -> None:
    """Built for a contract this server does not provide."""
    api.require_api("2.0")

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    api.route("GET", "/future/thing", handler, errors=api.errors.openai)
    api.register_model("future-model", "deepseek-chat")


def register_models(api: PluginContext) -> None:
    api.register_model("sample-fast", "deepseek-chat")
    api.register_alias("sample-thinker", "deepseek-reasoner")


def register_taken_model(api: PluginContext) -> None:
    """Takes a name another plugin registered: refused, with its routes."""
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    api.route("GET", "/taken/thing", handler, errors=api.errors.openai)
    api.register_model("sample-other", "deepseek-chat")
    api.register_model("sample-fast", "deepseek-chat")


def register_leaky(api: PluginContext) -> None:
    raise RuntimeError("hook https://hooks.example/in?token=tok-s3cr3t refused api_key=sk-leak-123")


async def _answer(request: web.Request) -> web.Response:
    return web.json_response({"served_by": "plugin"})


def register_admin_path(api: PluginContext) -> None:
    """Serves a path of the admin API: refused, it would hide the admin's."""
    api.route("GET", "/admin/config", _answer, errors=api.errors.openai)


def register_catch_all(api: PluginContext) -> None:
    """Serves every GET path no one else does (the server's own come first)."""
    api.route("GET", "/{tail:.*}", _answer, errors=api.errors.openai)


def register_unroutable(api: PluginContext) -> None:
    api.route("GET", "relative/path", _answer, errors=api.errors.openai)


def register_twice(api: PluginContext) -> None:
    """GET /twice declared twice, another route between: the second never ran."""
    api.route("GET", "/twice", _answer, errors=api.errors.openai)
    api.route("GET", "/twice/other", _answer, errors=api.errors.openai)
    api.route("get", "/twice", _answer, errors=api.errors.openai)


async def register_async(api: PluginContext) -> None:
    """Written as a coroutine: nothing in it ever ran, yet it showed as loaded."""
    api.route("GET", "/async/thing", _answer, errors=api.errors.openai)


def register_exiting(api: PluginContext) -> None:
    raise SystemExit("the optional dependency foo is missing")


def register_fragile_check(api: PluginContext) -> None:
    """A settings check that raises on a value of the wrong type."""
    api.check_settings(lambda s: {} if s.get("limit", 1) > 0 else {"limit": "must be > 0"})
    api.route("GET", "/fragile/settings", _answer, errors=api.errors.openai)


def register_listing_check(api: PluginContext) -> None:
    """A settings check that lists its problems instead of naming their fields."""
    api.check_settings(lambda s: [] if s.get("limit", 1) > 0 else ["limit must be > 0"])
    api.route("GET", "/listing/settings", _answer, errors=api.errors.openai)


def register_quiet_check(api: PluginContext) -> None:
    """A settings check that returns None when it finds nothing."""
    api.check_settings(lambda s: None)


def register_strict_key(api: PluginContext) -> None:
    """Checks its key, and quotes a bad one back (as plugins often do)."""
    def check(settings: Mapping[str, Any]) -> dict[str, str]:
        key = settings.get("api_key", "sk-")
        return {} if str(key).startswith("sk-") else {
            "api_key": f"{key!r} does not start with 'sk-' (api_key={key})"}

    api.check_settings(check)


def register_stuck_hooks(api: PluginContext) -> None:
    """A start-up hook that never returns, one that exits, and a shut-down
    hook that never returns: none may hold the server."""
    async def forever() -> None:
        await asyncio.Event().wait()

    async def exits() -> None:
        raise SystemExit("the optional service is gone")

    async def started() -> None:
        EVENTS.append("stuck:started")

    api.on_startup(forever)
    api.on_startup(exits)
    api.on_startup(started)
    api.on_shutdown(forever)
    api.on_shutdown(lambda: _note("stuck:stopped"))


async def _note(event: str) -> None:
    EVENTS.append(event)
