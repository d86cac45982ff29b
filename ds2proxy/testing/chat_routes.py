"""Sessions, PoW challenges, completion and continue of the fake upstream."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .delivery import send_fault, send_round
from .envelopes import MESSAGE_NOT_FOUND, NOTHING_TO_CONTINUE, biz_error, envelope, ok
from .fake_core import FakeCore, Refusal
from .recordings import load_rounds, split_events
from .scripted_stream import TurnContext, render
from .scripts import EnvelopeFault, HttpFault, Replay, Script, Scripted, echo_script
from .state import FakeMessage, FakeSession

COMPLETION_PATH = "/api/v0/chat/completion"
SESSION_TTL_SECONDS = 259200


class ChatRoutes(FakeCore):
    default_script: Script | None = None
    # A business error every session delete answers with (cleanup failures).
    delete_error: tuple[int, str] | None = None
    # A continue accepts its completion's PoW header again, as DS2API relies
    # on (§11.2); False: it wants a fresh answer, as for any other call
    # (the spec leaves open which the server does, §15).
    continue_reuses_pow = True

    def chat_routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v0/chat_session/create", self.create_session),
            web.get("/api/v0/chat_session/fetch_page", self.fetch_page),
            web.post("/api/v0/chat_session/delete", self.delete_session),
            web.post("/api/v0/chat_session/delete_all", self.delete_all),
            web.post("/api/v0/chat/create_pow_challenge", self.create_pow_challenge),
            web.post(COMPLETION_PATH, self.completion),
            web.post("/api/v0/chat/continue", self.continue_),
            web.post("/api/v0/chat/stop_stream", self.stop_stream),
        ]

    # -- sessions -------------------------------------------------------------

    async def create_session(self, request: web.Request) -> web.Response:
        await self.json_body(request)
        session = self.new_session(self.call_of(request).account or "")
        return ok({"chat_session": session.as_json(), "ttl_seconds": SESSION_TTL_SECONDS})

    async def fetch_page(self, request: web.Request) -> web.Response:
        owner = self.call_of(request).account
        mine = sorted((s for s in self.sessions.values() if s.owner == owner),
                      key=lambda s: s.updated_at, reverse=True)
        return ok({"chat_sessions": [s.as_json() for s in mine], "has_more": False})

    async def delete_session(self, request: web.Request) -> web.Response:
        body = await self.json_body(request, "chat_session_id")
        if self.delete_error is not None:
            return biz_error(self.delete_error)
        session = self.sessions.get(body["chat_session_id"])
        if session is not None and session.owner == self.call_of(request).account:
            del self.sessions[session.id]
        return ok(None)

    async def delete_all(self, request: web.Request) -> web.Response:
        await self.json_body(request)
        owner = self.call_of(request).account
        for sid in [sid for sid, s in self.sessions.items() if s.owner == owner]:
            del self.sessions[sid]
        return ok(None)

    async def stop_stream(self, request: web.Request) -> web.Response:
        await self.json_body(request, "chat_session_id", "message_id")
        return ok(None)

    # -- PoW and streams ------------------------------------------------------

    async def create_pow_challenge(self, request: web.Request) -> web.Response:
        body = await self.json_body(request, "target_path")
        return ok({"challenge": self.pow.issue(str(body["target_path"]))})

    async def completion(self, request: web.Request) -> web.StreamResponse:
        body = await self.json_body(request, "chat_session_id", "prompt")
        self.require_pow(request, COMPLETION_PATH)
        session = self.owned_session(request, body["chat_session_id"])
        script = self.misbehaviour(self.call_of(request).account).completion or (
            self.queue.popleft() if self.queue else (
                self.default_script or echo_script(str(body["prompt"]))))
        if isinstance(script, HttpFault):
            return await send_fault(request, script)
        if isinstance(script, EnvelopeFault):
            return envelope(script.code, script.msg, script.biz_code, script.biz_msg)
        message = self._new_message(session, body, script)
        account = str(self.call_of(request).account)
        self.streaming[account] = now = self.streaming.get(account, 0) + 1
        self.max_streaming[account] = max(now, self.max_streaming.get(account, 0))
        try:
            return await self._serve_next(request, message)
        finally:
            self.streaming[account] -= 1

    async def continue_(self, request: web.Request) -> web.StreamResponse:
        body = await self.json_body(request, "chat_session_id", "message_id")
        # The completion's header is accepted again, even past its expiry (spec §11.2).
        reuse = self.continue_reuses_pow
        self.require_pow(request, COMPLETION_PATH, consume=not reuse, check_expiry=not reuse)
        session = self.owned_session(request, body["chat_session_id"])
        message = session.messages.get(body["message_id"])
        if message is None:
            raise Refusal(biz_error(MESSAGE_NOT_FOUND))
        if message.served >= len(message.rounds):
            raise Refusal(biz_error(NOTHING_TO_CONTINUE))
        return await self._serve_next(request, message)

    async def _serve_next(self, request: web.Request, message: FakeMessage) -> web.StreamResponse:
        events = message.rounds[message.served]
        message.served += 1
        return await send_round(request, events, message.delivery)

    def _new_message(self, session: FakeSession, body: dict[str, Any],
                     script: Scripted | Replay) -> FakeMessage:
        """Message ids 1/2 on a new session, then 3/4 …; the script rendered to rounds."""
        request_id = session.last_message_id + 1
        ctx = TurnContext(
            request_message_id=request_id, response_message_id=request_id + 1,
            model_type=str(body.get("model_type") or "default"),
            thinking_enabled=bool(body.get("thinking_enabled")),
            search_enabled=bool(body.get("search_enabled")),
            prompt=str(body.get("prompt") or ""), first_turn=session.title is None,
        )
        if isinstance(script, Replay):
            rounds = [split_events(r) for r in load_rounds(script.path)]
        else:
            rounds = render(script, ctx)
            session.title = session.title or script.title
        message = FakeMessage(request_id, request_id + 1, rounds, script.delivery)
        session.messages[message.response_id] = message
        session.last_message_id = message.response_id
        session.updated_at = time.time()
        return message
