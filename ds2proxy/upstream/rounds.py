"""One DeepSeek answer on the wire: the completion and continue request
bodies, opening them (with the PoW and its one retry), and the continue-round
loop that reads an answer to its end.

The loop hands the parser the complete lines of a read (in slices of at
most ``BATCH_LINES``) and yields the upstream events of each as one batch,
so an answer costs one trip through the consumer's generators per read or
slice, not per token; nothing is held back (a batch is only what had
already arrived).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import aiohttp

from .. import pow as pow_solver
from ..canonical import ChatRequest
from ..errors import UpstreamError, UpstreamTimeout
from .client import COMPLETION_PATH, DeepSeekClient, UpstreamStream
from .envelope import POW_REFUSED_CODES, UpstreamCallError
from .events import UpstreamEvent
from .stream_parser import StreamParser
from .credentials import Credentials, TokenKeeper, with_refresh

CONTINUE_PATH = "/api/v0/chat/continue"
SAMPLING = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "presence_penalty",
            "frequency_penalty", "stop")

Reopen = Callable[[int], Awaitable[UpstreamStream]]
# Lines parsed and shaped before their events go on (about a quarter of a
# millisecond of work): a read can hold thousands.
BATCH_LINES = 128


def completion_body(chat: ChatRequest, session_id: str, prompt: str, parent: int | None,
                    file_ids: list[str]) -> dict[str, Any]:
    """The ``/chat/completion`` body for ``prompt`` in ``session_id``."""
    body: dict[str, Any] = {
        "chat_session_id": session_id,
        "model_type": chat.model.model_type,
        "parent_message_id": parent,
        "prompt": prompt,
        "ref_file_ids": list(file_ids),
        "thinking_enabled": chat.thinking_enabled,
        "search_enabled": chat.model.search,
    }
    body.update({k: v for k, v in chat.sampling.items() if k in SAMPLING and v is not None})
    return body


def continue_body(session_id: str, message_id: int) -> dict[str, Any]:
    """The ``/chat/continue`` body that resumes an INCOMPLETE answer."""
    return {"chat_session_id": session_id, "message_id": message_id,
            "fallback_to_resume": True}


async def solve_pow(client: DeepSeekClient, keeper: TokenKeeper, creds: Credentials, *,
                    on_solved: Callable[[float], None] | None = None) -> str:
    """A fresh challenge, solved off the loop, as the PoW header value;
    ``on_solved`` gets the solve's start time (``time.perf_counter``)."""
    challenge = await with_refresh(creds, keeper, client.create_pow_challenge)
    started = time.perf_counter()
    answer = await pow_solver.solve(challenge)
    if on_solved is not None:
        on_solved(started)
    return pow_solver.encode_header(challenge, answer)


async def open_completion(client: DeepSeekClient, keeper: TokenKeeper, creds: Credentials,
                          body: dict[str, Any], pow_header: str = ""
                          ) -> tuple[UpstreamStream, str]:
    """Open a completion with ``pow_header`` (or a fresh one); a refused PoW
    answer gets one fresh challenge (spec §12). Returns the stream and the
    header it was opened with (continue rounds reuse it)."""
    return await _open_with_pow(client, keeper, creds, COMPLETION_PATH, body, pow_header)


async def open_continue(client: DeepSeekClient, keeper: TokenKeeper, creds: Credentials,
                        session_id: str, message_id: int, pow_header: str
                        ) -> tuple[UpstreamStream, str]:
    """Open the next continue round of an INCOMPLETE answer with the last
    round's PoW header (spec §11.2); a server that refuses it as reused
    gets one fresh answer (§12). Returns the stream and the header used."""
    body = continue_body(session_id, message_id)
    return await _open_with_pow(client, keeper, creds, CONTINUE_PATH, body, pow_header)


async def _open_with_pow(client: DeepSeekClient, keeper: TokenKeeper, creds: Credentials,
                         path: str, body: dict[str, Any], pow_header: str
                         ) -> tuple[UpstreamStream, str]:
    """Open ``path``'s stream with ``pow_header``, or a fresh answer when
    there is none or the upstream refuses it (missing, wrong or reused)."""
    for attempt in range(2):
        if attempt or not pow_header:
            pow_header = await solve_pow(client, keeper, creds)
        header = pow_header
        try:
            stream = await with_refresh(creds, keeper,
                                        lambda t: client.open_stream(path, t, header, body))
            return stream, header
        except UpstreamCallError as exc:
            if exc.envelope.code not in POW_REFUSED_CODES or attempt:
                raise
    raise AssertionError("unreachable")


async def read_rounds(resp: UpstreamStream, parser: StreamParser, reopen: Reopen, *,
                      max_rounds: int, silence: float
                      ) -> AsyncGenerator[list[UpstreamEvent], None]:
    """The upstream events of one answer, a batch per read, continue rounds
    included (``reopen(message_id)`` opens the next round's stream).

    However the answer ends (its last round, the rounds run out, EOF, a cut
    connection, a continue that cannot open), the text the parser held back
    goes out before the end or the error (:meth:`StreamParser.finish`).
    """
    rounds = 0
    clock = asyncio.get_running_loop().time
    failure: Exception | None = None
    while True:
        parser.start_round()
        heard = clock()  # when the stream last sent more than ``: `` keep-alive comments
        try:
            async for lines in resp.line_batches():
                if not _only_comments(lines):
                    heard = clock()
                elif clock() - heard >= silence:
                    raise TimeoutError  # kept alive, but saying nothing
                # A large read goes on in slices, so the first of its lines
                # is written out before the last is parsed.
                for start in range(0, len(lines), BATCH_LINES):
                    events = parser.feed_lines(lines[start:start + BATCH_LINES]
                                               if len(lines) > BATCH_LINES else lines)
                    if events:
                        yield events
        except TimeoutError:
            resp.release("silence timeout")
            failure = UpstreamTimeout(f"the upstream stream sent nothing for {silence:g} s "
                                      "(upstream.silence_timeout_seconds)")
        except aiohttp.ClientError as exc:
            resp.release(type(exc).__name__)
            failure = UpstreamError(f"upstream stream broke: {type(exc).__name__}")
        except UpstreamError as exc:  # a line too long to hold
            resp.release(exc.message)
            failure = exc
        finally:
            resp.release()
        if (failure is not None or not parser.should_continue or rounds >= max_rounds
                or not parser.response_message_id):
            break
        rounds += 1
        try:
            resp = await reopen(parser.response_message_id)
        except Exception as exc:  # a ProxyError: the answer ends with it
            failure = exc
            break
    held = parser.finish()
    if held:
        yield held
    if failure is not None:
        raise failure


def _only_comments(lines: list[str]) -> bool:
    """A read of nothing but ``: `` comment lines (and blank ones): the
    upstream's keep-alive, which says the connection lives, not the answer."""
    for line in lines:
        if line and not line.startswith(":"):
            return False
    return True
