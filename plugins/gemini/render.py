"""Canonical results → Gemini ``GenerateContentResponse`` objects.

Shared by the non-stream answer and the stream chunks, so both carry the
same candidate, finish reason, usage and identity fields (tool-calling §5.4).
"""

from __future__ import annotations

from typing import Any

from ds2proxy.plugin_api import ChatRequest, Citation, TurnResult, Usage
from ds2proxy.dialects.openai_chat import arguments_object

FINISH_REASONS = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS",
                  "content_filter": "SAFETY"}
MODEL_ROLE = "model"


def finish_reason(reason: str) -> str:
    return FINISH_REASONS.get(reason, "OTHER")


def usage_metadata(usage: Usage) -> dict[str, int]:
    """Gemini counts thoughts apart from the candidates; the total holds both.
    Cached prompt tokens are a part of the prompt's, named when there are any."""
    body = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": max(usage.completion_tokens - usage.reasoning_tokens, 0),
        "totalTokenCount": usage.total_tokens,
        "thoughtsTokenCount": usage.reasoning_tokens,
    }
    if usage.cached_tokens:
        body["cachedContentTokenCount"] = usage.cached_tokens
    return body


def thought_part(text: str) -> dict[str, Any]:
    return {"text": text, "thought": True}


def call_part(name: str, arguments: str) -> dict[str, Any]:
    """A ``functionCall`` part: Gemini carries ``args`` as an object, never text."""
    return {"functionCall": {"name": name, "args": arguments_object(arguments)}}


def citation_metadata(citations: list[Citation]) -> dict[str, Any]:
    return {"citations": [{"uri": c.url, "title": c.title} for c in citations]}


def candidate(parts: list[dict], *, finish: str | None = None,
              citations: list[Citation] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"content": {"role": MODEL_ROLE, "parts": parts}, "index": 0}
    if finish is not None:
        body["finishReason"] = finish_reason(finish)
    if citations:
        body["citationMetadata"] = citation_metadata(citations)
    return body


def response(chat: ChatRequest, response_id: str, cand: dict[str, Any],
             usage: Usage | None = None) -> dict[str, Any]:
    """The envelope every answer and chunk shares; ``modelVersion`` echoes the request."""
    body: dict[str, Any] = {"candidates": [cand]}
    if usage is not None:
        body["usageMetadata"] = usage_metadata(usage)
    body["modelVersion"] = chat.model.requested
    body["responseId"] = response_id
    return body


def generate_content_response(result: TurnResult, chat: ChatRequest, *,
                              show_thoughts: bool = False) -> dict[str, Any]:
    """The non-stream answer: thoughts, non-blank text, then one part per call."""
    parts: list[dict[str, Any]] = []
    if result.reasoning and show_thoughts:
        parts.append(thought_part(result.reasoning))
    if result.text.strip():
        parts.append({"text": result.text})
    parts.extend(call_part(call.name, call.arguments) for call in result.calls)
    cand = candidate(parts, finish=result.finish, citations=result.citations)
    return response(chat, result.id, cand, result.usage)
