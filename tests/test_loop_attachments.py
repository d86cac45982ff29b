"""A large request (a multi-MB inline image, thousands of messages) is parsed
in a worker thread, its base64 decoded there a slice at a time and its
sha256 worked out once, and its uploads planned in a thread; the upload is
the same bytes the loop would have sent. A small request stays on the loop.
Figures: bench/loop_lag_bench.py."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from typing import Any

import pytest
from conftest import Proxy
from test_attachments import ask_openai, assert_uploaded, image_url_part

from ds2proxy import turn_text
from ds2proxy.dialects import content
from ds2proxy.errors import InvalidRequest
from ds2proxy.dialects.parse_off_loop import PARSE_OFF_LOOP_BYTES
from ds2proxy.testing.clients import anthropic_client, openai_client
from ds2proxy.upstream import files
from ds2proxy_plugins.claude import messages as claude_messages
from ds2proxy_plugins.openai import chat as openai_chat

BIG = b"\x89PNG\r\n\x1a\n" + os.urandom(content._SLICE)  # several decode slices
BIG_B64 = base64.b64encode(BIG).decode()


def recorded(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """The thread each call of ``module.name`` ran on."""
    seen: list[int] = []
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return seen


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each payload the upload planner hashed."""
    sizes: list[int] = []

    class Hashlib:
        @staticmethod
        def sha256(data: bytes) -> Any:
            sizes.append(len(data))
            return hashlib.sha256(data)

    monkeypatch.setattr(files, "hashlib", Hashlib)
    return sizes


async def test_a_big_image_is_parsed_and_hashed_once_in_a_thread(
        proxy: Proxy, monkeypatch: pytest.MonkeyPatch, hashed: list[int]):
    parsed_on = recorded(monkeypatch, openai_chat, "parse_chat_request")
    await ask_openai(proxy, image_url_part(f"data:image/png;base64,{BIG_B64}"))
    assert_uploaded(proxy, BIG, "image/png", "vision")
    assert parsed_on and threading.get_ident() not in parsed_on
    assert hashed == [len(BIG)]


async def test_a_small_request_is_parsed_on_the_loop(proxy: Proxy,
                                                     monkeypatch: pytest.MonkeyPatch):
    parsed_on = recorded(monkeypatch, openai_chat, "parse_chat_request")
    small = base64.b64encode(BIG[:1000]).decode()
    await ask_openai(proxy, image_url_part(f"data:image/png;base64,{small}"))
    assert_uploaded(proxy, BIG[:1000], "image/png", "vision")
    assert parsed_on == [threading.get_ident()]


async def test_a_big_anthropic_image_is_parsed_in_a_thread(
        proxy: Proxy, monkeypatch: pytest.MonkeyPatch, hashed: list[int]):
    parsed_on = recorded(monkeypatch, claude_messages, "parse_messages_request")
    async with anthropic_client(proxy) as client:
        await client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=[{
            "role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": BIG_B64}},
                {"type": "text", "text": "describe"}]}])
    [stored] = proxy.fake.files.values()
    assert stored.content == BIG
    assert parsed_on and threading.get_ident() not in parsed_on
    assert hashed == [len(BIG)]


async def test_a_bad_character_deep_in_a_big_payload_is_a_400(proxy: Proxy):
    broken = BIG_B64[:content._SLICE + 8] + "!" + BIG_B64[content._SLICE + 9:]
    assert len(broken) > PARSE_OFF_LOOP_BYTES
    with pytest.raises(Exception) as caught:
        await ask_openai(proxy, image_url_part(f"data:image/png;base64,{broken}"))
    assert getattr(caught.value, "status_code", None) == 400
    assert "not valid base64" in str(caught.value)
    assert proxy.fake.calls_to("file/upload_file") == []


@pytest.mark.parametrize("text", [
    BIG_B64[:content._SLICE] + "=" + BIG_B64[content._SLICE + 1:],  # padding mid-way
    BIG_B64[:-1],                                                    # cut short
    BIG_B64[:content._SLICE * 2] + "-" + BIG_B64[content._SLICE * 2 + 1:],
    "QQ=A", "Q===", "====", "QQ=",
])
def test_sliced_decoding_refuses_what_a_whole_decode_refuses(text: str):
    with pytest.raises(InvalidRequest):
        content.inline_bytes(text, "data")


def test_sliced_decoding_gives_the_same_bytes():
    assert content.inline_bytes(BIG_B64, "data") == BIG
    wrapped = "\n".join(BIG_B64[i:i + 76] for i in range(0, len(BIG_B64), 76))
    assert content.inline_bytes(wrapped, "data") == BIG
    assert content.inline_bytes("QUI=", "data") == b"AB"


def many_messages(count: int) -> list[dict[str, Any]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} ok"}
            for i in range(count)] + [{"role": "user", "content": "sum it up"}]


async def test_thousands_of_messages_are_parsed_and_planned_off_the_loop(
        proxy: Proxy, monkeypatch: pytest.MonkeyPatch):
    parsed_on = recorded(monkeypatch, openai_chat, "parse_chat_request")
    planned_on = recorded(monkeypatch, turn_text, "plan_files")
    async with openai_client(proxy) as client:
        reply = await client.chat.completions.create(model="deepseek-chat",
                                                     messages=many_messages(5000))
    assert reply.choices[0].finish_reason == "stop"
    assert "message 4999 ok" in proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    loop = threading.get_ident()
    assert parsed_on and loop not in parsed_on
    assert planned_on and loop not in planned_on


async def test_a_short_conversation_plans_its_files_on_the_loop(
        proxy: Proxy, monkeypatch: pytest.MonkeyPatch):
    planned_on = recorded(monkeypatch, turn_text, "plan_files")
    async with openai_client(proxy) as client:
        await client.chat.completions.create(model="deepseek-chat", messages=many_messages(3))
    assert planned_on == [threading.get_ident()]
