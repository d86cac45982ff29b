"""The ``/api/v1`` and ``/lm/v2`` surfaces on the wire: every recording
reconstructs exactly through both, each surface's SSE bytes follow its
document (event sequence and terminators), and errors come back in the
route's shape with the right status.

Streams are read as raw bytes here so the framing itself is under test.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from ds2proxy.testing import Delivery, Replay, Scripted, load_expected
from ds2proxy.testing.clients import Reply
from ds2proxy.testing.clients import post as raw_post

RECORDINGS = [
    "markdown-format-example-20260405-spacefix",
    "longtext-deepseek-v4-flash-20260429",
    "continue-thinking-snapshot-replay-20260405",
    "guangzhou-weather-reasoner-search-20260404",
]
DEGPT = "/api/v1/chat/completions"
LM = "/lm/v2/chat/completions"
MESSAGES = "/api/v1/messages"
USER = [{"role": "user", "content": "hello"}]


def inline(thinking: str, content: str) -> str:
    """The LM v2 document's inline form of reasoning before the answer."""
    return f"<think>\n{thinking}\n</think>\n\n{content}" if thinking else content


def degpt_view(thinking: str, content: str) -> dict[str, str]:
    return {"content": content, "reasoning_content": thinking}


def lm_view(thinking: str, content: str) -> dict[str, str]:
    return {"content": inline(thinking, content), "reasoning_content": ""}


# (path, the surface's word for a natural end, what a client sees of a turn)
SURFACES = [pytest.param(DEGPT, "stop", degpt_view, id="degpt"),
            pytest.param(LM, "normal", lm_view, id="lm")]


async def post(proxy, path: str, body: dict | bytes, headers: dict | None = None) -> Reply:
    return await raw_post(proxy.url + path, body, proxy.headers() if headers is None else headers)


def sse_frames(body: bytes) -> list[Any]:
    """Every event must be exactly ``data: <payload>\\n\\n``; JSON payloads decoded."""
    assert body.endswith(b"\n\n")
    frames: list[Any] = []
    for event in body[:-2].split(b"\n\n"):
        assert event.startswith(b"data: ") and b"\n" not in event, event[:80]
        payload = event[len(b"data: "):].decode()
        frames.append(payload if payload == "[DONE]" else json.loads(payload))
    return frames


async def stream(proxy, path: str, body: dict) -> list[Any]:
    answer = await post(proxy, path, {**body, "stream": True})
    assert answer.status == 200, answer.body[:300]
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    frames = sse_frames(answer.body)
    assert frames[-1] == "[DONE]" and "[DONE]" not in frames[:-1]
    return frames[:-1]


def joined(frames: list[dict], key: str) -> str:
    return "".join(c["choices"][0]["delta"].get(key) or "" for c in frames if c["choices"])


# -- recordings and the thinking switch -----------------------------------------------


def seen(message: dict) -> dict[str, str]:
    return {key: message.get(key) or "" for key in ("content", "reasoning_content")}


async def both_modes(proxy, path: str, body: dict) -> tuple[dict, dict, str, str]:
    """What a client sees of one turn asked without, then with, streaming."""
    answer = await post(proxy, path, body)
    assert answer.status == 200, answer.body[:300]
    (choice,) = answer.json()["choices"]
    frames = await stream(proxy, path, body)
    streamed = {key: joined(frames, key) for key in ("content", "reasoning_content")}
    return (seen(choice["message"]), streamed, choice["finish_reason"],
            frames[-1]["choices"][0]["finish_reason"])


@pytest.mark.parametrize("path, finish, view", SURFACES)
@pytest.mark.parametrize("name", RECORDINGS)
async def test_recording_reconstructs_exactly(proxy, fixtures_dir, name, path, finish, view):
    want = load_expected(fixtures_dir / "deepseek-sse" / name)
    replay = Replay(fixtures_dir / "deepseek-sse" / name)
    proxy.fake.enqueue(replay, replay)
    shown = await both_modes(proxy, path, {"model": "deepseek-reasoner", "messages": USER})
    whole = view(want["thinking"], want["content"])
    assert shown == (whole, whole, finish, finish)
    assert len(proxy.fake.calls_to("chat/continue")) == 2 * (want["rounds"] - 1)


@pytest.mark.parametrize("path, finish, view", SURFACES)
async def test_recording_without_thinking_is_plain_content(proxy, fixtures_dir, path, finish,
                                                           view):
    want = load_expected(fixtures_dir / "deepseek-sse" / RECORDINGS[0])
    replay = Replay(fixtures_dir / "deepseek-sse" / RECORDINGS[0])
    proxy.fake.enqueue(replay, replay)
    shown = await both_modes(proxy, path, {"model": "deepseek-chat", "messages": USER})
    plain = view("", want["content"])
    assert shown == (plain, plain, finish, finish)


@pytest.mark.parametrize("path, finish, view", SURFACES)
@pytest.mark.parametrize("model, switch, upstream", [
    ("deepseek-chat", "enabled", True),
    ("deepseek-reasoner", "disabled", False),
    ("deepseek-reasoner", "auto", True),
    ("deepseek-chat", "auto", False),
])
async def test_thinking_switch(proxy, path, finish, view, model, switch, upstream):
    turn = Scripted(thinking="private", answer="ok")
    proxy.fake.enqueue(turn, turn)
    shown = await both_modes(proxy, path, {"model": model, "messages": USER,
                                           "thinking": {"type": switch}})
    sent = [call.body["thinking_enabled"] for call in proxy.fake.calls_to("chat/completion")]
    assert sent == [upstream, upstream]
    whole = view("private" if upstream else "", "ok")
    assert shown == (whole, whole, finish, finish)


# -- golden SSE ---------------------------------------------------------------------


def chunk_shape(chunk: dict) -> tuple:
    """What a golden comparison pins: delta, finish, and the per-surface extras."""
    (choice,) = chunk["choices"]
    extras = {k: v for k, v in choice.items() if k not in ("index", "delta", "finish_reason")}
    return choice["delta"], choice["finish_reason"], extras, chunk.get("usage", "absent")


def assert_common_envelope(frames: list[dict], model: str) -> None:
    assert len({(c["id"], c["created"]) for c in frames}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == model for c in frames)
    assert all(c["choices"][0]["index"] == 0 for c in frames)


async def test_degpt_stream_golden(proxy):
    proxy.fake.enqueue(Scripted(thinking=["Let ", "me think"], answer=["Hi", " there"]))
    frames = await stream(proxy, DEGPT, {"model": "auto", "messages": USER,
                                         "thinking": {"type": "enabled"}})
    assert_common_envelope(frames, proxy.core.config.models.default)
    null = {"logprobs": None}
    assert [chunk_shape(c) for c in frames] == [
        ({"role": "assistant", "content": ""}, None, null, "absent"),
        ({"reasoning_content": "Let ", "content": ""}, None, null, "absent"),
        ({"reasoning_content": "me think", "content": ""}, None, null, "absent"),
        ({"content": "Hi"}, None, null, "absent"),
        ({"content": " there"}, None, null, "absent"),
        ({"content": ""}, "stop", null, "absent"),
    ]


async def test_lm_stream_golden_with_usage_on_the_last_chunk_only(proxy):
    proxy.fake.enqueue(Scripted(thinking=["Let ", "me think"], answer=["Hi", " there"]))
    frames = await stream(proxy, LM, {"model": "deepseek-reasoner", "messages": USER,
                                      "stream_options": {"include_usage": True}})
    assert_common_envelope(frames, "deepseek-reasoner")
    usage = frames[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert [chunk_shape(c) for c in frames] == [
        ({"role": "assistant", "content": ""}, None, {}, None),
        ({"content": "<think>\nLet "}, None, {}, None),
        ({"content": "me think"}, None, {}, None),
        ({"content": "\n</think>\n\n"}, None, {}, None),
        ({"content": "Hi"}, None, {}, None),
        ({"content": " there"}, None, {}, None),
        ({"content": ""}, "normal", {}, usage),
    ]


async def test_lm_stream_without_include_usage_has_no_usage_field(proxy):
    proxy.fake.enqueue(Scripted(answer=["Hi"]))
    frames = await stream(proxy, LM, {"model": "deepseek-chat", "messages": USER})
    assert [chunk_shape(c) for c in frames] == [
        ({"role": "assistant", "content": ""}, None, {}, "absent"),
        ({"content": "Hi"}, None, {}, "absent"),
        ({"content": ""}, "normal", {}, "absent"),
    ]


@pytest.mark.parametrize("path", [DEGPT, LM])
async def test_content_filter_keeps_the_partial_answer(proxy, path):
    turn = Scripted(answer="Partial.", content_filter=True)
    proxy.fake.enqueue(turn, turn)
    shown = await both_modes(proxy, path, {"model": "deepseek-chat", "messages": USER})
    partial = {"content": "Partial.", "reasoning_content": ""}
    assert shown == (partial, partial, "content_filter", "content_filter")


@pytest.mark.parametrize("path", [DEGPT, LM])
async def test_content_filter_before_any_text_is_a_400(proxy, path):
    proxy.fake.enqueue(Scripted(answer="", content_filter=True))
    answer = await post(proxy, path, {"model": "deepseek-chat", "messages": USER})
    assert answer.status == 400 and error_of(answer.body, "openai")["code"] == "content_filter"


# -- errors -------------------------------------------------------------------------

# (path, body shape) — /api/v1/messages answers in Anthropic's shape.
ROUTES = [(DEGPT, "openai"), (LM, "openai"), (MESSAGES, "anthropic")]


def error_of(raw: bytes, shape: str) -> dict:
    body = json.loads(raw)
    if shape == "anthropic":
        assert body["type"] == "error"
    return body["error"]


@pytest.mark.parametrize("path, shape", ROUTES)
@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b'{"model": "deepseek-chat", "max_tokens": 10}', "messages"),
    (b'{"model": "no-such-model", "max_tokens": 10, "messages": '
     b'[{"role": "user", "content": "x"}]}', "model"),
])
async def test_bad_request_is_a_400_in_the_route_shape(proxy, path, shape, body, param):
    answer = await post(proxy, path, body)
    err = error_of(answer.body, shape)
    assert answer.status == 400
    assert err["type"] == "invalid_request_error" and err["message"]
    assert err["param"] == param
    assert proxy.fake.calls_to("chat/completion") == []


@pytest.mark.parametrize("path, shape", ROUTES)
async def test_bad_key_is_a_401(proxy_factory, path, shape):
    proxy = await proxy_factory({"auth": {"allow_passthrough": False}})
    answer = await post(proxy, path, {"model": "deepseek-chat", "max_tokens": 10,
                                      "messages": USER},
                        headers={"Authorization": "Bearer wrong", "x-api-key": "wrong"})
    assert answer.status == 401
    assert error_of(answer.body, shape)["type"] == "authentication_error"


@pytest.mark.parametrize("path, shape", ROUTES)
async def test_full_pool_is_a_429_with_retry_after(proxy_factory, path, shape):
    proxy = await proxy_factory({"runtime": {"global_max_inflight": 1,
                                             "account_max_queue": 0}})
    proxy.fake.enqueue(Scripted(answer="abcdefgh", chunk_size=1,
                                delivery=Delivery(chunk_delay=0.02)))
    body = {"model": "deepseek-chat", "max_tokens": 10, "messages": USER}
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + DEGPT, headers=proxy.headers(),
                             json={**body, "stream": True}) as held:
            await held.content.readline()
            assert proxy.core.pool.inflight == 1
            answer = await post(proxy, path, body)
            await held.read()
    assert answer.status == 429 and int(answer.headers["Retry-After"]) >= 1
    assert error_of(answer.body, shape)["type"] == "rate_limit_error"
