"""The pre-encoded text chunk of a chat stream is byte for byte what the
general path builds for the same delta, in every surface's style."""

from __future__ import annotations

import orjson
import pytest

from ds2proxy.canonical import ChatRequest, Message, ResolvedModel, TextDelta, TextPart
from ds2proxy.dialects.chat_stream import ChatStreamRenderer
from ds2proxy.dialects.openai_chat import ChatStyle
from ds2proxy_plugins.degpt.chat import STYLE as DEGPT
from ds2proxy_plugins.lm.chat import STYLE as LM

MODEL = ResolvedModel(requested="deepseek-chat", native="deepseek-chat", model_type="default",
                      thinking=False, search=False)
TEXTS = ["plain", 'quote " and \\ back', "line\nbreak", "ünï✓ 😀", "\x00text"]


@pytest.mark.parametrize("style", [ChatStyle(), DEGPT, LM], ids=["openai", "degpt", "lm"])
@pytest.mark.parametrize("include_usage", [False, True])
def test_text_chunks_match_the_general_path(style, include_usage):
    chat = ChatRequest(model=MODEL, messages=[Message("user", [TextPart("hi")])], stream=True,
                       include_usage=include_usage)
    renderer = ChatStreamRenderer(chat, "turn-1", 1700000000, style)
    first = renderer.frames(TextDelta("start"))
    assert all(isinstance(frame, dict) for frame in first)  # the opening goes the long way
    for text in TEXTS:
        [frame] = renderer.frames(TextDelta(text))
        assert isinstance(frame, bytes)
        assert frame == orjson.dumps(renderer._chunk({"content": text}))
