"""Account tests and the self-test: is each account usable, and does the
proxy's own API answer?

Testing an account logs in when needed and opens a chat session (deleted
again right after); with a message it runs a real turn pinned to that
account, through the same pipeline as any caller. Testing all accounts fans
out with a bound so a large pool does not hammer the upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

from ..auth import Caller
from ..canonical import ChatRequest, Message, TextPart
from ..errors import NotFound, ProxyError, UpstreamError
from ..scheduler import AccountState
from ..upstream.envelope import UpstreamCallError
from .masking import preview

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("ds2proxy.admin")

DEFAULT_MODEL = "deepseek-chat"
FANOUT = 4
REPLY_PREVIEW = 200


async def _open_session(core: Core, state: AccountState) -> None:
    """Login (when needed) and session creation, refreshing a refused token once."""
    token = await core.keeper.ensure(state)
    try:
        session_id = await core.client.create_session(token)
    except UpstreamCallError as exc:
        if not exc.envelope.needs_refresh:
            raise
        token = await core.keeper.refresh(state, stale_token=token)
        session_id = await core.client.create_session(token)
    try:
        await core.client.delete_session(token, session_id)
    except UpstreamError as exc:
        log.info("test session of %s was not deleted: %s", state.identifier, exc.message)


async def _ask(core: Core, identifier: str, model: str, message: str) -> str:
    chat = ChatRequest(model=core.resolve_model(model),
                       messages=[Message("user", [TextPart(message)])])
    caller = Caller(credential="", managed=True, identity="admin", target_account=identifier)
    async with core.turn(chat, caller) as turn:
        result = await turn.collect()
    return result.text


async def test_account(core: Core, identifier: str, *, model: str = DEFAULT_MODEL,
                       message: str = "") -> dict[str, Any]:
    """One account's verdict: success, latency in ms, and what happened."""
    state = core.pool.find(identifier)
    if state is None:
        raise NotFound(f"no account {identifier}")
    core.resolve_model(model)  # a bad model is the request's fault, not the account's
    started = time.monotonic()
    try:
        if message:
            reply = await _ask(core, state.identifier, model, message)
            outcome = f"reply: {reply[:REPLY_PREVIEW]}" if reply else "empty reply"
        else:
            await _open_session(core, state)
            outcome = "login and session creation succeeded"
        success = True
        state.last_error = ""
    except ProxyError as exc:
        success, outcome = False, exc.operator_message
        state.last_error = exc.detail or exc.message
    # The token a login just obtained shows as a preview, like in the account list.
    return {"account": state.identifier, "success": success,
            "response_time": round((time.monotonic() - started) * 1000),
            "message": outcome, "model": model, "token_preview": preview(state.token)}


async def each_account(core: Core, *, model: str = DEFAULT_MODEL, message: str = "",
                       fanout: int = FANOUT) -> AsyncIterator[dict[str, Any]]:
    """Test every account, at most ``fanout`` at a time; results as they finish."""
    core.resolve_model(model)
    gate = asyncio.Semaphore(fanout)

    async def one(identifier: str) -> dict[str, Any]:
        async with gate:
            return await test_account(core, identifier, model=model, message=message)

    tasks = [asyncio.create_task(one(s.identifier)) for s in core.pool.accounts()]
    try:
        for finished in asyncio.as_completed(tasks):
            yield await finished
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sum(1 for r in results if r["success"])
    return {"total": len(results), "success": ok, "failed": len(results) - ok,
            "results": results}


# -- the proxy's own API -----------------------------------------------------------------


def own_base_url(request: web.Request) -> str:
    """This server as reached over loopback-or-LAN from itself (not via any
    proxy): the address of the very socket the request arrived on. Never the
    ``Host`` header: the playground and the self-test send an API key to this
    URL, and a forged Host would steer that key to another machine. Once the
    connection is gone there is no socket to read and nobody to answer, so
    the call is refused instead of guessed."""
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if not isinstance(sock, tuple) or len(sock) < 2:
        raise ProxyError("the connection closed before this server could call itself",
                         status=400, code="connection_closed")
    host = sock[0]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{sock[1]}" if ":" in host else f"http://{host}:{sock[1]}"


async def call_own_api(base_url: str, key: str, *, model: str, message: str,
                       timeout: float) -> dict[str, Any]:
    """POST /v1/chat/completions on ourselves, as any client would."""
    body = {"model": model, "messages": [{"role": "user", "content": message}],
            "stream": False}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.post(f"{base_url}/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {key}"}) as resp:
                status = resp.status
                text = await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"success": False, "status_code": 0,
                "response": {"error": f"request failed: {type(exc).__name__}"}}
    try:
        parsed: Any = orjson.loads(text)
    except ValueError:
        parsed = text[:2000]
    return {"success": status == 200, "status_code": status, "response": parsed}
