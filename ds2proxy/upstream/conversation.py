"""One DeepSeek chat on one account: its session, PoW, uploads and the
completion and continue requests of a turn.

:class:`ds2proxy.pipeline.Turn` decides what to send and when (fail-over,
retries, the prompt); this class holds what the web chat needs to receive
it: the session id, the PoW header the last request used, the open answer
stream, and every session opened (so they can be cleaned up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..canonical import ChatRequest
from ..overlap import both
from .cleanup import SessionJanitor
from .client import DeepSeekClient, UpstreamStream
from .files import PendingUpload, upload_all
from .rounds import completion_body, open_completion, open_continue, solve_pow
from .credentials import Credentials, TokenKeeper, with_refresh

HISTORY_MIME = "text/plain"


@dataclass(slots=True)
class Conversation:
    """The upstream side of one turn; ``creds`` changes on a fail-over."""

    client: DeepSeekClient
    keeper: TokenKeeper
    chat: ChatRequest
    on_pow_solved: Callable[[float], None] | None = None
    session_id: str = ""
    stream: UpstreamStream | None = None
    _pow_header: str = ""
    _opened: list[tuple[Credentials, str]] = field(default_factory=list)

    async def start(self, creds: Credentials) -> str:
        """A new session and a solved PoW (one round trip for both: the
        challenge does not depend on the session); returns the PoW header."""
        self.session_id, pow_header = await both(self._new_session(creds), self._pow(creds))
        return pow_header

    async def _new_session(self, creds: Credentials) -> str:
        session_id = await with_refresh(creds, self.keeper, self.client.create_session)
        self._opened.append((creds, session_id))
        return session_id

    async def _pow(self, creds: Credentials) -> str:
        return await solve_pow(self.client, self.keeper, creds, on_solved=self.on_pow_solved)

    async def upload(self, creds: Credentials, uploads: Iterable[PendingUpload]
                     ) -> dict[str, str]:
        """Upload files on this account (files belong to one account, so a
        fail-over uploads them again); their ids by upload key."""
        return await upload_all(self.client, creds, self.keeper, uploads)

    async def upload_history(self, creds: Credentials, text: str, name: str) -> str:
        """The history file (§6) on this account; its file id."""
        upload = PendingUpload(key="history", data=text.encode("utf-8"), kind="history file",
                               name=name, mime_type=HISTORY_MIME,
                               model_type=self.chat.model.model_type)
        return (await self.upload(creds, [upload]))[upload.key]

    async def complete(self, creds: Credentials, prompt: str, parent: int | None,
                       file_ids: list[str], pow_header: str = "") -> None:
        """Send ``prompt`` (a reply to ``parent``, or the first message) and
        open its answer stream; a refused PoW is solved again once."""
        body = completion_body(self.chat, self.session_id, prompt, parent, file_ids)
        self.stream, self._pow_header = await open_completion(
            self.client, self.keeper, creds, body, pow_header)

    async def continue_round(self, creds: Credentials, message_id: int) -> UpstreamStream:
        """Open the next continue round of the current answer."""
        self.stream, self._pow_header = await open_continue(
            self.client, self.keeper, creds, self.session_id, message_id, self._pow_header)
        return self.stream

    def release_stream(self) -> None:
        if self.stream is not None:
            self.stream.release()
            self.stream = None

    def delete_sessions(self, janitor: SessionJanitor) -> None:
        """Delete every session this turn opened (fail-overs included), in
        the background."""
        for creds, session_id in self._opened:
            janitor.schedule(creds.token, [session_id])
        self._opened.clear()
