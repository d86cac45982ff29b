"""The text a turn sends upstream: prompt, history file, token counts.

One function decides whether a conversation goes as a history file and
renders it; turns and count_tokens routes both use it, so the figure a
count_tokens route reports is exactly what a turn would send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from .canonical import ChatRequest
from .config import Config, HistoryFileSettings
from .prompt.build import build_prompt
from .prompt.history_file import continuation_prompt, render_history_file
from .prompt.weight import flattens_in_thread
from .structured import format_instructions
from .tokens import count_attachment_tokens, count_tokens_async
from .toolcall.prompt import build_tool_prompt
from .upstream.files import PendingUpload, plan_uploads, ref_file_ids, with_uploaded_ids

# What an uploaded file's mention in the prompt ("attached as file-…") is
# counted with: its real id exists only once uploaded, so a turn and a
# count_tokens route both count this one, an id of the median token length.
NOMINAL_FILE_ID = "file-309d6b79-965e-4a32-9ae4-45508201e2bd"
T = TypeVar("T")


def _control_text(chat: ChatRequest, config: Config) -> tuple[str, str]:
    """The tool prompt (with JSON-mode instructions) and the thinking injection."""
    tool_prompt = ""
    if chat.tools and config.toolcall.mode == "feature_match":
        tool_prompt = build_tool_prompt(chat.tools, chat.tool_choice,
                                        single_call=not chat.parallel_tool_calls)
    extra = format_instructions(chat.response_format)
    tool_prompt = "\n\n".join(part for part in (tool_prompt, extra) if part)
    injection = config.thinking_injection.active_prompt if chat.thinking_enabled else ""
    return tool_prompt, injection


def build_turn_prompt(chat: ChatRequest, config: Config) -> str:
    """The upstream prompt for a request: messages, tool prompt, JSON-mode
    instructions and (when on) the thinking injection. count_tokens routes use
    it too, so their figure is exactly what a turn would send."""
    tool_prompt, injection = _control_text(chat, config)
    return build_prompt(chat.messages, tool_prompt=tool_prompt, thinking_injection=injection)


def history_file_for(prompt: str, config: Config) -> HistoryFileSettings | None:
    """The history-file settings when this prompt should go as a file (§6)."""
    settings = config.history_file
    return settings if settings.enabled and len(prompt) > settings.min_prompt_chars else None


def render_turn(chat: ChatRequest, config: Config, history: HistoryFileSettings | None
                ) -> tuple[str, str]:
    """(history file text or "", live prompt) for a turn whose shape is
    decided. With a history file the whole conversation goes in the file and
    the live prompt only refers to it, keeping the turn's control text."""
    if history is None:
        return "", build_turn_prompt(chat, config)
    tool_prompt, injection = _control_text(chat, config)
    return (render_history_file(chat.messages, history.file_name),
            continuation_prompt(history.file_name, tool_prompt=tool_prompt,
                                thinking_injection=injection))


def plan_turn_text(chat: ChatRequest, config: Config
                   ) -> tuple[HistoryFileSettings | None, str, str]:
    """Decide once whether the conversation goes as a history file, and
    render it: (history settings or None, file text or "", live prompt)."""
    plain = build_turn_prompt(chat, config)
    history = history_file_for(plain, config)
    if history is None:
        return None, "", plain
    return (history, *render_turn(chat, config, history))


async def _flattened(chat: ChatRequest, render: Callable[..., T], *args: object) -> T:
    """``render(*args)``, in a worker thread when ``chat`` is large (a
    multi-MB conversation held every other stream while it was flattened)."""
    if flattens_in_thread(chat):
        return await asyncio.to_thread(render, *args)
    return render(*args)


async def plan_turn_text_async(chat: ChatRequest, config: Config
                               ) -> tuple[HistoryFileSettings | None, str, str]:
    """:func:`plan_turn_text`, off the event loop for a large request."""
    return await _flattened(chat, plan_turn_text, chat, config)


async def render_turn_async(chat: ChatRequest, config: Config,
                            history: HistoryFileSettings | None) -> tuple[str, str]:
    """:func:`render_turn`, off the event loop for a large request."""
    return await _flattened(chat, render_turn, chat, config, history)


def plan_files(chat: ChatRequest) -> tuple[dict[str, PendingUpload], list[str]]:
    """The inline payloads to upload (400 over the limit) and the file ids
    the turn references."""
    return plan_uploads(chat.messages, chat.model.model_type), ref_file_ids(chat)


async def plan_files_async(chat: ChatRequest
                           ) -> tuple[dict[str, PendingUpload], list[str]]:
    """:func:`plan_files`, off the event loop for a large request (10,000
    messages took ~15 ms to walk)."""
    return await _flattened(chat, plan_files, chat)


async def turn_prompt_tokens(chat: ChatRequest, config: Config,
                             planned: tuple[HistoryFileSettings | None, str, str],
                             uploads: dict[str, PendingUpload]) -> int:
    """Usage counts everything the model reads: history file, live prompt
    and the uploaded attachments (see the README on what a file counts).
    ``planned`` is :func:`plan_turn_text`'s result; with uploads the texts
    are rendered again with each named by :data:`NOMINAL_FILE_ID`, so a turn
    and a count_tokens route count the same before any id exists."""
    history, history_text, prompt = planned
    if uploads:
        named = with_uploaded_ids(chat, dict.fromkeys(uploads, NOMINAL_FILE_ID))
        history_text, prompt = await render_turn_async(named, config, history)
    files = [(u.data, u.mime_type) for u in uploads.values()]
    return (await count_tokens_async(history_text) + await count_tokens_async(prompt)
            + await count_attachment_tokens(files))


async def estimate_prompt_tokens(chat: ChatRequest, config: Config) -> int:
    """Prompt tokens a turn for ``chat`` would report, without uploading
    anything (count_tokens routes)."""
    uploads = plan_uploads(chat.messages, chat.model.model_type)
    return await turn_prompt_tokens(chat, config, await plan_turn_text_async(chat, config),
                                    uploads)
