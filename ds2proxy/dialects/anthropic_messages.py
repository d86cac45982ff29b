"""Anthropic Messages: response rendering (one message, or the stream's
events) and the route helper that answers from an open turn.

Shared by every plugin that serves Messages semantics (the Claude family's
routes and the web-chat surface's ``/api/v1/messages``); requests are
parsed in :mod:`.anthropic_request`. Tool-calling §5.3 for the output side.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ..canonical import (
    ChatRequest,
    Citation,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    TurnEvent,
    TurnResult,
    Usage,
)
from ..error_bodies import anthropic_error_body
from ..errors import ProxyError
from . import json_response
from .anthropic_request import (
    DEFAULT_MAX_TOKENS,
    carried_signature,
    interleaved_thinking,
    parse_messages_request,
    searched_tool,
    thinking_omitted,
)
from .anthropic_search import search_blocks, search_usage
from .openai_chat import arguments_object, decode_arguments

if TYPE_CHECKING:
    from ..plugin_api import PluginContext, Turn

__all__ = ["DEFAULT_MAX_TOKENS", "MessagesStreamRenderer", "interleaved_thinking",
           "message_object", "parse_messages_request", "respond_messages",
           "searched_tool", "thinking_omitted", "thinking_signature", "tool_use_id"]

STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens",
                "content_filter": "refusal"}
_BASE62 = string.ascii_letters + string.digits

Frame = tuple[str, dict]


# --------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------


def random_id(prefix: str, length: int = 24) -> str:
    """``prefix`` + random base-62 characters (unique across requests)."""
    return prefix + "".join(secrets.choice(_BASE62) for _ in range(length))


def tool_use_id(call_id: str) -> str:
    """A ``toolu_`` id for a call: the core's id when it already has that form."""
    return call_id if call_id.startswith("toolu_") else random_id("toolu_")


def thinking_signature(thinking: str) -> str:
    """A stable opaque signature: clients send thinking blocks back with it."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def tool_input(arguments: str) -> Any:
    """A call's arguments (JSON text of an object) as the ``input`` object."""
    return arguments_object(arguments)


def stop_reason(reason: str, stop_sequence: str | None) -> str:
    """Anthropic's stop_reason: a matched stop sequence is its own reason."""
    return "stop_sequence" if stop_sequence else STOP_REASONS.get(reason, "end_turn")


def thinking_block(thinking: str, omitted: bool) -> dict:
    """A whole thinking block; ``omitted``: without its text, which its
    signature carries (``thinking.display`` "omitted")."""
    if omitted:
        return {"type": "thinking", "thinking": "", "signature": carried_signature(thinking)}
    return {"type": "thinking", "thinking": thinking, "signature": thinking_signature(thinking)}


def message_object(result: TurnResult, chat: ChatRequest, message_id: str, *,
                   omit_thinking: bool = False, web_search: str | None = None) -> dict:
    """The non-stream ``message``: [thinking] [text when non-blank] [tool_use…]
    [the ``web_search`` tool's call and result, when it found pages]."""
    content: list[dict] = []
    if result.reasoning:
        content.append(thinking_block(result.reasoning, omit_thinking))
    if result.text.strip():
        content.append({"type": "text", "text": result.text})
    content += [{"type": "tool_use", "id": tool_use_id(call.id), "name": call.name,
                 "input": tool_input(call.arguments)} for call in result.calls]
    citations = result.citations if web_search else []
    if citations:
        content += search_blocks(citations, web_search or "", random_id("srvtoolu_"))
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": chat.model.requested,
        "content": content,
        "stop_reason": stop_reason(result.finish, result.stop_sequence),
        "stop_sequence": result.stop_sequence,
        "usage": {**input_usage(result.usage), **output_usage(result.usage),
                  **search_usage(citations)},
    }


def output_usage(usage: Usage) -> dict[str, Any]:
    """``output_tokens``, and of them the reasoning in
    ``output_tokens_details.thinking_tokens`` (what Claude Code's
    thinking-token-count beta reads: with the text omitted it cannot count it)."""
    out: dict[str, Any] = {"output_tokens": usage.completion_tokens}
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def input_usage(usage: Usage) -> dict[str, int]:
    """Anthropic's ``input_tokens`` leave out the prompt read from a cache,
    which ``cache_read_input_tokens`` names (a provider's cache; the web chat
    reports none)."""
    if not usage.cached_tokens:
        return {"input_tokens": usage.prompt_tokens}
    return {"input_tokens": usage.prompt_tokens - usage.cached_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": usage.cached_tokens}


class MessagesStreamRenderer:
    """Turn events → ``(event name, payload)`` frames (framing is the writer's).

    One content block is open at a time; indexes count up across all blocks
    and every block opened is closed before ``message_delta``. Whitespace
    that would open a text block is held until visible text follows it, so
    a stream never has the blank text block its message would not (the
    newlines around a tool call).
    """

    def __init__(self, chat: ChatRequest, message_id: str, input_tokens: int, *,
                 omit_thinking: bool = False, web_search: str | None = None) -> None:
        self.chat = chat
        self.omit_thinking = omit_thinking
        self.web_search = web_search
        self._citations: list[Citation] = []
        self.message_id = message_id
        self.input_tokens = input_tokens
        self.started = False
        self.finished = False
        self._index = -1
        self._open: str | None = None
        self._thinking: list[str] = []
        self._blank = ""  # whitespace held until visible text follows
        self._calls: dict[int, int] = {}
        self._arguments: list[str] = []  # of the open tool_use block
        self._output: dict[str, Any] = {"output_tokens": 0}
        self._final_input: dict[str, int] | None = None  # the final usage's prompt counts

    def frames(self, event: TurnEvent) -> list[Frame]:
        """Frames for one event."""
        out = self._start()
        if isinstance(event, ReasoningDelta) and event.text:
            out += self._reasoning(event.text)
        elif isinstance(event, TextDelta) and event.text:
            out += self._text(event.text)
        elif isinstance(event, ToolCallStart):
            out += self._open_tool(event)
        elif isinstance(event, ToolCallArgs) and self._open == "tool_use" \
                and self._calls.get(event.index) == self._index:
            self._arguments.append(event.arguments)
        elif isinstance(event, ToolCallEnd) and self._open == "tool_use" \
                and self._calls.get(event.index) == self._index:
            out += self._close()
        elif isinstance(event, Citation) and self.web_search:
            self._citations.append(event)
        elif isinstance(event, Usage):
            self._output = output_usage(event)
            self._final_input = input_usage(event)
        elif isinstance(event, Finish):
            out += self.finish(event.reason, event.stop_sequence)
        return out

    def error(self, error: ProxyError) -> list[Frame]:
        """The in-band ``error`` event; the message is not stopped after it."""
        self.finished = True
        return [("error", anthropic_error_body(error))]

    def end(self) -> list[Frame]:
        """``message_stop`` for a turn that ended without a Finish event."""
        return self.finish()

    def finish(self, reason: str = "stop", stop_sequence: str | None = None) -> list[Frame]:
        """Close the open block, then ``message_delta`` and ``message_stop``."""
        if self.finished:
            return []
        self.finished = True
        out = self._start() + self._close() + self._search()
        usage: dict[str, Any] = {**self._output, **search_usage(self._citations)}
        if self._final_input is not None and self._final_input != {
                "input_tokens": self.input_tokens}:
            # Counts on message_delta are cumulative and replace message_start's:
            # a provider's own prompt count and cache reads, a retry's second prompt.
            usage.update(self._final_input)
        out.append(("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(reason, stop_sequence),
                      "stop_sequence": stop_sequence},
            "usage": usage}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _search(self) -> list[Frame]:
        """The web search tool's call and result blocks, whole, when it found pages."""
        if not self._citations:
            return []
        out: list[Frame] = []
        for block in search_blocks(self._citations, self.web_search or "",
                                   random_id("srvtoolu_")):
            out += [self._open_block(block["type"], block), *self._close()]
        return out

    def _start(self) -> list[Frame]:
        if self.started:
            return []
        self.started = True
        message = {"id": self.message_id, "type": "message", "role": "assistant",
                   "model": self.chat.model.requested, "content": [], "stop_reason": None,
                   "stop_sequence": None,
                   "usage": {"input_tokens": self.input_tokens, "output_tokens": 0}}
        return [("message_start", {"type": "message_start", "message": message}),
                ("ping", {"type": "ping"})]

    def _text(self, text: str) -> list[Frame]:
        if self._open != "text" and text.isspace():
            self._blank += text
            return []
        text, self._blank = self._blank + text, ""
        return self._delta("text", {"type": "text_delta", "text": text})

    def _reasoning(self, text: str) -> list[Frame]:
        """A thinking delta; with the text omitted, only the block is opened
        and the text kept for the signature that carries it."""
        self._thinking.append(text)
        if not self.omit_thinking:
            return self._delta("thinking", {"type": "thinking_delta", "thinking": text})
        if self._open == "thinking":
            return []
        return [*self._close(), self._open_block(
            "thinking", {"type": "thinking", "thinking": "", "signature": ""})]

    def _delta(self, kind: str, delta: dict) -> list[Frame]:
        out: list[Frame] = []
        if self._open != kind:
            out += self._close()
            block = ({"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking"
                     else {"type": "text", "text": ""})
            out.append(self._open_block(kind, block))
        out.append(("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                            "delta": delta}))
        return out

    def _open_tool(self, event: ToolCallStart) -> list[Frame]:
        out = self._close()
        out.append(self._open_block("tool_use", {"type": "tool_use", "id": tool_use_id(event.id),
                                                 "name": event.name, "input": {}}))
        self._calls[event.index] = self._index
        return out

    def _input_delta(self) -> list[Frame]:
        """The tool's input as one ``input_json_delta``, sent when the call is
        complete: arguments that are not a JSON object (a provider's model may
        write anything there) go as the ``input`` object the non-stream
        message has, never as JSON the client cannot parse."""
        text, self._arguments = "".join(self._arguments), []
        if not text.strip():
            return []
        if not isinstance(decode_arguments(text), dict):
            text = orjson.dumps(tool_input(text)).decode()
        return [("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                         "delta": {"type": "input_json_delta",
                                                   "partial_json": text}})]

    def _open_block(self, kind: str, block: dict) -> Frame:
        self._blank = ""  # whitespace before another kind of block is dropped
        self._index += 1
        self._open = kind
        return ("content_block_start", {"type": "content_block_start", "index": self._index,
                                        "content_block": block})

    def _close(self) -> list[Frame]:
        if self._open is None:
            return []
        out: list[Frame] = []
        if self._open == "thinking":
            signature = thinking_block("".join(self._thinking), self.omit_thinking)["signature"]
            out.append(("content_block_delta", {
                "type": "content_block_delta", "index": self._index,
                "delta": {"type": "signature_delta", "signature": signature}}))
            self._thinking = []
        if self._open == "tool_use":
            out += self._input_delta()
        out.append(("content_block_stop", {"type": "content_block_stop", "index": self._index}))
        self._open = None
        return out


async def respond_messages(api: PluginContext, request: web.Request, turn: Turn,
                           chat: ChatRequest, message_id: str | None = None, *,
                           omit_thinking: bool = False,
                           web_search: str | None = None) -> web.StreamResponse:
    """Answer a Messages request from an open turn, stream or not
    (``message_id``: a surface's own id shape, else ``msg_…``;
    ``omit_thinking``: the request's ``thinking.display`` omits the text;
    ``web_search``: the web search tool the search ran for, see
    :func:`searched_tool`)."""
    message_id = message_id or random_id("msg_")
    if not chat.stream:
        result = await turn.collect()
        return json_response(message_object(result, chat, message_id,
                                            omit_thinking=omit_thinking,
                                            web_search=web_search))
    renderer = MessagesStreamRenderer(chat, message_id, turn.prompt_tokens,
                                      omit_thinking=omit_thinking, web_search=web_search)
    return await api.relay(api.sse(request), turn, renderer)
