"""Tool calls for a provider configured without them (``tools: false``).

The conversation goes as the one prompt the web-chat pool would send (tool
instructions and JSON-mode text included), and the provider's answer goes
through the same :class:`~ds2proxy.shaping.TurnShaper` as a pool answer, so
calls written in the prompt's markup come back as native tool-call events.
The provider's usage, when it reports one, replaces the shaper's count.
"""

from __future__ import annotations

from typing import Any

from ..canonical import ChatRequest, ReasoningDelta, TextDelta, TurnEvent, Usage
from ..config import Config
from ..shaping import ShapingSettings, TurnShaper
from ..structured import JSONOutputError
from ..turn_text import build_turn_prompt
from ..errors import OutputInvalid


def emulated_body(chat: ChatRequest, config: Config, model: str,
                  limit_field: str = "max_tokens") -> dict[str, Any]:
    """One user message holding the whole flattened conversation."""
    body: dict[str, Any] = {
        "model": model, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": build_turn_prompt(chat, config)}]}
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        if name in chat.sampling:
            body[name] = chat.sampling[name]
    if chat.max_tokens is not None:
        body[limit_field] = chat.max_tokens
    return body


class EmulatedTools:
    """Text and reasoning events → shaped events (tool calls found in the text)."""

    def __init__(self, chat: ChatRequest, config: Config, prompt_tokens: int) -> None:
        settings = ShapingSettings(config.toolcall.mode, config.toolcall.early_emit_confidence,
                                   config.search.citation_style)
        self.shaper = TurnShaper(chat, settings, prompt_tokens, list)

    def feed(self, events: list[TurnEvent]) -> list[TurnEvent]:
        out: list[TurnEvent] = []
        for event in events:
            if self.shaper.stopped:
                break
            if type(event) is TextDelta:
                out += self.shaper.on_answer(event.text)
            elif type(event) is ReasoningDelta:
                out += self.shaper.on_reasoning(event.text)
        return out

    def end(self, usage: Usage | None) -> list[TurnEvent]:
        """What the shaper held, JSON checked, then usage and the finish."""
        out = self.shaper.flush()
        if self.shaper.json_pending:
            try:
                out += self.shaper.finish_json()
            except JSONOutputError as exc:
                raise OutputInvalid(f"the model did not return the requested JSON: {exc}"
                                    ) from None
        tail = self.shaper.tail()
        if usage is not None:
            tail = [usage if type(e) is Usage else e for e in tail]
        return out + tail
