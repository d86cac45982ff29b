"""A bare client of the DeepSeek web API for probing the fake upstream.

No retries, no account pool, pure-Python PoW: it sends exactly what a test
asks for and returns exactly what came back, so the fake's own behaviour can
be checked without the production client in the way. Only for small PoW
difficulties.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ..pow.reference import search
from ..upstream.stream_parser import StreamParser
from .reconstruct import Reconstruction
from .state import FakeAccount

CLIENT_HEADERS = {"x-client-platform": "android", "x-client-version": "2.0.4",
                  "x-client-locale": "zh_CN", "Accept": "application/json"}
COMPLETION = "/api/v0/chat/completion"


@dataclass
class RawReply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def encode_pow(challenge: dict[str, Any], answer: int) -> str:
    """The ``x-ds-pow-response`` value for ``answer`` (spec §5.4)."""
    keys = ("algorithm", "challenge", "salt", "signature", "target_path")
    payload = {k: challenge[k] for k in keys} | {"answer": answer}
    return base64.b64encode(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).decode()


def solve(challenge: dict[str, Any]) -> int:
    prefix = f"{challenge['salt']}_{challenge['expire_at']}_".encode()
    return search(prefix, bytes.fromhex(challenge["challenge"]), 0, challenge["difficulty"])


class RawClient:
    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http, self.base_url = http, base_url

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, base_url: str) -> AsyncIterator[RawClient]:
        """A client with its own HTTP session, closed on exit."""
        async with aiohttp.ClientSession() as http:
            yield cls(http, base_url)

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                   headers: dict[str, str] | None = None, **kwargs: Any) -> RawReply:
        sent = dict(CLIENT_HEADERS)
        if token:
            sent["authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        data = orjson.dumps(body) if body is not None else kwargs.pop("data", None)
        async with self.http.request(method, self.base_url + path, data=data, headers=sent,
                                     **kwargs) as resp:
            return RawReply(resp.status, resp.headers.get("Content-Type", ""), await resp.read())

    async def login(self, password: str, **identity: Any) -> str:
        reply = await self.call("POST", "/api/v0/users/login",
                                {**identity, "password": password, "device_id": "test",
                                 "os": "android"})
        return reply.json()["data"]["biz_data"]["user"]["token"]

    async def login_as(self, account: FakeAccount) -> str:
        identity = {"email": account.email} if account.email else {"mobile": account.mobile}
        return await self.login(account.password, **identity)

    async def session(self, token: str) -> str:
        reply = await self.call("POST", "/api/v0/chat_session/create", {"agent": "chat"},
                                token=token)
        return reply.json()["data"]["biz_data"]["chat_session"]["id"]

    async def challenge(self, token: str, target_path: str = COMPLETION) -> dict[str, Any]:
        reply = await self.call("POST", "/api/v0/chat/create_pow_challenge",
                                {"target_path": target_path}, token=token)
        return reply.json()["data"]["biz_data"]["challenge"]

    async def pow_header(self, token: str, target_path: str = COMPLETION) -> str:
        challenge = await self.challenge(token, target_path)
        return encode_pow(challenge, solve(challenge))

    async def completion(self, token: str, session_id: str, prompt: str, pow_header: str, *,
                         parent: int | None = None, thinking: bool = True,
                         search_enabled: bool = False) -> RawReply:
        body = {"chat_session_id": session_id, "model_type": "default",
                "parent_message_id": parent, "prompt": prompt, "ref_file_ids": [],
                "thinking_enabled": thinking, "search_enabled": search_enabled}
        return await self.call("POST", COMPLETION, body, token=token,
                               headers={"x-ds-pow-response": pow_header})

    async def continue_(self, token: str, session_id: str, message_id: int,
                        pow_header: str) -> RawReply:
        body = {"chat_session_id": session_id, "message_id": message_id,
                "fallback_to_resume": True}
        return await self.call("POST", "/api/v0/chat/continue", body, token=token,
                               headers={"x-ds-pow-response": pow_header})

    async def turn(self, token: str, prompt: str, *, thinking: bool = True,
                   search_enabled: bool = False, session_id: str | None = None,
                   max_continues: int = 8) -> tuple[Reconstruction, list[RawReply]]:
        """A whole turn: session, PoW, completion, then continues while the stream asks."""
        sid = session_id or await self.session(token)
        header = await self.pow_header(token)
        seen = Reconstruction(StreamParser(thinking_enabled=thinking))
        replies = [await self.completion(token, sid, prompt, header, thinking=thinking,
                                         search_enabled=search_enabled)]
        seen.feed_round(replies[-1].body)
        while seen.parser.should_continue and len(replies) <= max_continues:
            msg_id = seen.parser.response_message_id or 0
            replies.append(await self.continue_(token, sid, msg_id, header))
            seen.feed_round(replies[-1].body)
        seen.finish()
        return seen, replies
