"""A chat turn's opening: everything up to the first upstream byte.

The conversation is flattened once (a large one in a thread), then an
account is leased, its session opened with a PoW, the inline attachments and
the history file uploaded and the completion requested; an account-level
failure there fails over to another managed account within the attempt cap
and the first-output deadline, so it becomes a plain HTTP error at worst.
The prompt tokens are counted meanwhile. :class:`~ds2proxy.pipeline.Turn`
builds on this with the streaming, the retries and the cleanup.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from . import request_record
from .auth import Caller
from .canonical import ChatRequest
from .errors import UpstreamError
from .failover import Attempts, credentials_for
from .health import classify
from .turn_text import (plan_files_async, plan_turn_text_async, render_turn_async,
                        turn_prompt_tokens)
from .upstream.conversation import Conversation
from .upstream.credentials import Credentials
from .upstream.files import PendingUpload, ref_file_ids, with_uploaded_ids

if TYPE_CHECKING:
    from .config import HistoryFileSettings
    from .core import Core

# The turn's logger, opening and streaming alike.
log = logging.getLogger("ds2proxy.pipeline")


class TurnOpening:
    def __init__(self, core: Core, chat: ChatRequest, caller: Caller) -> None:
        self.core = core
        self.chat = chat
        self.caller = caller
        self.id = uuid.uuid4().hex
        self.created = int(time.time())
        # Inline payloads to upload once an account is leased (400 over the
        # limit) and the file ids referenced: planned in open().
        self._uploads: dict[str, PendingUpload] = {}
        self._file_ids: list[str] = []
        # Settings as at the turn's start: a fail-over sends the same shape.
        self._config = core.config
        self._sent_chat = chat
        self._history: HistoryFileSettings | None = None  # all three planned in open()
        self._history_text = self.prompt = ""
        # Counted in open(), beside the upstream setup (large texts off the loop).
        self.prompt_tokens = 0
        self.account: str | None = None
        self._creds: Credentials | None = None
        self._upstream = Conversation(core.client, core.keeper, chat,
                                      on_pow_solved=core.metrics.time_pow)
        self._attempts = Attempts(core.pool, self._config.upstream,
                                  pinned=bool(caller.target_account))

    async def open(self) -> None:
        """Flatten the conversation (a large one in a thread), reach an open
        upstream stream and count the prompt tokens meanwhile (ditto)."""
        if not self.prompt:  # once: a fail-over re-opens with the same text
            self._uploads, self._file_ids = await plan_files_async(self.chat)
            self._history, self._history_text, self.prompt = await plan_turn_text_async(
                self.chat, self._config)
        counting = asyncio.ensure_future(self._count_prompt())
        try:
            await self._reach_stream()
        except BaseException:
            counting.cancel()
            raise
        await counting

    async def _count_prompt(self) -> None:
        """Count the texts as a count_tokens route does (uploads named by
        the nominal id, so the count does not wait for them)."""
        planned = (self._history, self._history_text, self.prompt)
        self.prompt_tokens = await turn_prompt_tokens(self.chat, self._config, planned,
                                                      self._uploads)

    async def _reach_stream(self) -> None:
        """Reach an open upstream stream, failing over between managed accounts
        within the attempt cap and the first-output deadline."""
        while True:
            creds = await credentials_for(self.caller, self.core.pool, self.core.keeper,
                                          self._attempts)
            try:
                await self._attempts.within(self._open_on(creds))
            except UpstreamError as exc:
                self._blame(creds, exc)
                creds.release()
                self.core.monitor.account_error(creds.identifier, exc.detail or exc.message)
                if not self._attempts.may_retry(exc, managed=creds.managed):
                    raise self._attempts.final(exc) from None
                log.warning("account %s failed before streaming (%s); trying another",
                            creds.identifier, exc.message)
                continue
            except BaseException:
                creds.release()
                raise
            self._creds = creds
            self.account = creds.identifier
            request_record.note_account(creds.identifier if creds.managed else "")
            return

    def _blame(self, creds: Credentials | None, exc: BaseException) -> None:
        """Tell the pool's health tracker when a failure is the account's."""
        failure = classify(exc)
        if creds is not None and creds.lease is not None and failure is not None:
            self.core.pool.health.failed(creds.identifier, failure,
                                         started=creds.lease.granted_at)

    def _credit(self) -> None:
        if self._creds is not None and self._creds.managed:
            self.core.pool.health.succeeded(self._creds.identifier)

    async def _open_on(self, creds: Credentials) -> None:
        pow_header = await self._upstream.start(creds)
        self.id = self._upstream.session_id
        await self._attach_uploads(creds)
        await self._attach_history(creds)
        await self._upstream.complete(creds, self.prompt, None, self._file_ids, pow_header)

    async def _attach_uploads(self, creds: Credentials) -> None:
        """Upload the inline attachments on this account, then reference them
        by id and name them in the prompt (a fail-over gets new ids)."""
        if not self._uploads:
            return
        ids = await self._upstream.upload(creds, self._uploads.values())
        self._sent_chat = with_uploaded_ids(self.chat, ids)
        self._file_ids = ref_file_ids(self._sent_chat)
        self._history_text, self.prompt = await render_turn_async(self._sent_chat, self._config,
                                                                  self._history)

    async def _attach_history(self, creds: Credentials) -> None:
        """Upload the history file and reference it first (§6). It is rendered
        after the inline uploads so it names their ids."""
        if self._history is None:
            return
        file_id = await self._upstream.upload_history(creds, self._history_text,
                                                      self._history.file_name)
        self._file_ids = list(dict.fromkeys([file_id, *ref_file_ids(self._sent_chat)]))
