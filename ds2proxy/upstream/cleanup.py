"""Deleting the web-chat sessions turns leave behind (spec §6.2 cleanup).

Every request opens a new chat session on the account, so without cleanup
the account's web history fills with one session per API call. With
``upstream.session_cleanup: single`` each turn's sessions are deleted once
the turn is over. The deletes run as background tasks: the client's answer
and the account lease never wait for them, and a delete that fails is only
logged. DS2API's ``all`` (wipe every session of the account) is not offered:
with several requests in flight on one account it would delete the sessions
of the others mid-answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..errors import ProxyError
from .client import DeepSeekClient

log = logging.getLogger("ds2proxy.upstream")

CLEANUP_CHOICES = ("none", "single")
# How long shutdown waits for deletes already under way.
DRAIN_SECONDS = 5.0


class SessionJanitor:
    """Runs session deletes in the background and drains them at shutdown."""

    def __init__(self, client: DeepSeekClient) -> None:
        self.client = client
        self._tasks: set[asyncio.Task[None]] = set()
        self.deleted = 0
        self.failed = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def schedule(self, token: str, session_ids: Iterable[str]) -> None:
        """Delete these sessions of the account behind ``token``, later."""
        for session_id in dict.fromkeys(s for s in session_ids if s):
            task = asyncio.get_running_loop().create_task(self._delete(token, session_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _delete(self, token: str, session_id: str) -> None:
        try:
            await self.client.delete_session(token, session_id)
        except ProxyError as exc:
            self.failed += 1
            log.warning("could not delete chat session %s: %s", session_id, exc.message)
            return
        self.deleted += 1
        log.debug("deleted chat session %s", session_id)

    async def idle(self) -> None:
        """Wait until no delete is under way (tests and shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        """Let running deletes finish for a moment, then cancel the rest."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            log.warning("shutdown cancelled %d chat session deletes", len(late))

