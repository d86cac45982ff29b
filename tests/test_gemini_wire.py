"""Gemini routes on the wire: golden SSE and JSON-array framing, Google error
shapes and statuses, and Gemini CLI's real requests sent as they were."""

from __future__ import annotations

import base64
import json
import threading

import aiohttp
import orjson
import pytest

from ds2proxy.canonical import ToolCall
from ds2proxy.prompt.dsml import render_tool_calls
from ds2proxy.testing import Delivery, HttpFault, Replay, Scripted, load_expected
from ds2proxy.testing.clients import Reply
from ds2proxy.testing.clients import post as raw_post

MODEL = "gemini-2.5-pro"
STREAM_PATH = f"/v1beta/models/{MODEL}:streamGenerateContent"
GENERATE_PATH = f"/v1beta/models/{MODEL}:generateContent"
HELLO = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
# Thought parts come only when asked for (Gemini CLI asks).
THOUGHTS = {**HELLO, "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


async def post(proxy, path: str, body: bytes | dict, headers: dict | None = None) -> Reply:
    return await raw_post(proxy.url + path, body, {"x-goog-api-key": proxy.key, **(headers or {})})


def sse_frames(body: bytes) -> list[bytes]:
    """The payloads of ``data:`` events; fails on any other kind of line."""
    assert body.endswith(b"\n\n")
    frames = []
    for event in body.split(b"\n\n")[:-1]:
        event = event.lstrip(b"\n")  # blank-line keep-alives
        assert event.startswith(b"data: ") and b"\n" not in event, event
        frames.append(event[len(b"data: "):])
    return frames


def chunk_bytes(parts: list[dict], response_id: str) -> bytes:
    """A content chunk exactly as the gateway serialises it."""
    return orjson.dumps({"candidates": [{"content": {"role": "model", "parts": parts},
                                         "index": 0}],
                         "modelVersion": MODEL, "responseId": response_id})


def assert_last_chunk(last: dict, finish: str = "STOP") -> None:
    """The finish and usage ride on the last content part, as Google's stream does."""
    cand = last["candidates"][0]
    assert cand["finishReason"] == finish and len(cand["content"]["parts"]) == 1
    usage = last["usageMetadata"]
    assert set(usage) == {"promptTokenCount", "candidatesTokenCount", "totalTokenCount",
                          "thoughtsTokenCount"}
    assert usage["totalTokenCount"] == (usage["promptTokenCount"]
                                        + usage["candidatesTokenCount"]
                                        + usage["thoughtsTokenCount"])


def text_of(chunks: list[dict], thought: bool = False) -> str:
    return "".join(p.get("text", "") for c in chunks if "candidates" in c
                   for p in c["candidates"][0]["content"]["parts"]
                   if bool(p.get("thought")) == thought and "functionCall" not in p)


def calls_of(chunks: list[dict]) -> list[dict]:
    return [p["functionCall"] for c in chunks if "candidates" in c
            for p in c["candidates"][0]["content"]["parts"] if "functionCall" in p]


async def test_sse_golden_bytes(proxy):
    proxy.fake.enqueue(Scripted(thinking="Hmm, a greeting.", answer="Hi there, friend!",
                                chunk_size=4))
    answer = await post(proxy, STREAM_PATH + "?alt=sse", THOUGHTS)
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/event-stream")
    assert b"[DONE]" not in answer.body and b"event:" not in answer.body
    frames = sse_frames(answer.body)
    chunks = [json.loads(f) for f in frames]
    response_id = chunks[0]["responseId"]
    for frame, chunk in zip(frames[:-1], chunks[:-1]):
        parts = chunk["candidates"][0]["content"]["parts"]
        assert len(parts) == 1 and parts[0]["text"]
        assert frame == chunk_bytes(parts, response_id)
    kinds = [bool(c["candidates"][0]["content"]["parts"][0].get("thought")) for c in chunks[:-1]]
    assert kinds == sorted(kinds, reverse=True)  # every thought before any text
    assert text_of(chunks, thought=True) == "Hmm, a greeting."
    assert text_of(chunks) == "Hi there, friend!"
    assert_last_chunk(chunks[-1])
    assert (chunks[-1]["responseId"], chunks[-1]["modelVersion"]) == (response_id, MODEL)


async def test_json_array_golden_bytes(proxy):
    proxy.fake.enqueue(Scripted(thinking="Hmm.", answer="Hi there, friend!", chunk_size=4))
    answer = await post(proxy, STREAM_PATH, THOUGHTS)
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    assert answer.body.startswith(b"[{") and answer.body.endswith(b"}]")
    chunks = answer.json()
    response_id = chunks[0]["responseId"]
    elements = answer.body[1:-1].split(b",\r\n")
    assert len(elements) == len(chunks)
    for element, chunk in zip(elements[:-1], chunks[:-1]):
        assert element == chunk_bytes(chunk["candidates"][0]["content"]["parts"], response_id)
    assert text_of(chunks, thought=True) == "Hmm."
    assert text_of(chunks) == "Hi there, friend!"
    assert_last_chunk(chunks[-1])


async def test_long_recording_streams_exactly_on_the_wire(proxy, fixtures_dir):
    sample = fixtures_dir / "deepseek-sse" / "continue-thinking-snapshot-replay-20260405"
    want = load_expected(sample)
    proxy.fake.enqueue(Replay(sample))
    answer = await post(proxy, STREAM_PATH + "?alt=sse", THOUGHTS)
    chunks = [json.loads(f) for f in sse_frames(answer.body)]
    assert answer.status == 200
    assert text_of(chunks, thought=True) == want["thinking"]
    assert text_of(chunks) == want["content"]
    assert_last_chunk(chunks[-1])
    assert len(proxy.fake.calls_to("chat/continue")) == want["rounds"] - 1


async def test_non_stream_body(proxy):
    proxy.fake.enqueue(Scripted(thinking="Hmm.", answer="Hi!"))
    reply = await post(proxy, GENERATE_PATH, THOUGHTS)
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    answer = reply.json()
    assert answer["candidates"] == [{"content": {"role": "model", "parts": [
        {"text": "Hmm.", "thought": True}, {"text": "Hi!"}]}, "index": 0,
        "finishReason": "STOP"}]
    assert answer["modelVersion"] == MODEL and answer["responseId"]
    assert answer["usageMetadata"]["thoughtsTokenCount"] > 0


@pytest.mark.parametrize("alt", ["?alt=sse", ""])
async def test_error_after_the_first_byte_is_a_final_google_error_chunk(proxy, alt):
    proxy.fake.enqueue(Scripted(answer="partial answer that never ends", chunk_size=2,
                                delivery=Delivery(drop_after=8)))
    answer = await post(proxy, STREAM_PATH + alt, HELLO)
    chunks = [json.loads(f) for f in sse_frames(answer.body)] if alt else answer.json()
    assert answer.status == 200
    assert text_of(chunks) and all("finishReason" not in c["candidates"][0]
                                   for c in chunks[:-1])
    error = chunks[-1]["error"]
    assert (error["code"], error["status"]) == (502, "UNAVAILABLE") and error["message"]
    assert proxy.core.pool.inflight == 0


TOOLS = [{"functionDeclarations": [{"name": "lookup", "parametersJsonSchema": {
    "type": "object", "properties": {"q": {"type": "string"}}}}]}]
REQUIRED = {**HELLO, "tools": TOOLS, "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}


async def test_a_required_call_that_never_comes_is_failed_precondition(proxy):
    proxy.fake.enqueue(Scripted(answer="No tool needed."), Scripted(answer="Still none."))
    answer = await post(proxy, GENERATE_PATH, REQUIRED)
    assert answer.status == 422
    google_error(answer.body, 422, "FAILED_PRECONDITION")
    answer = await post(proxy, STREAM_PATH + "?alt=sse", REQUIRED)
    chunks = [json.loads(f) for f in sse_frames(answer.body)]
    assert answer.status == 200 and text_of(chunks) == "Still none."
    assert (chunks[-1]["error"]["code"], chunks[-1]["error"]["status"]) == (
        422, "FAILED_PRECONDITION")


# -- errors ----------------------------------------------------------------------


def google_error(body: bytes, code: int, status: str) -> dict:
    error = json.loads(body)["error"]
    assert (error["code"], error["status"]) == (code, status)
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize("path, body", [
    (GENERATE_PATH, b"{not json"),
    (GENERATE_PATH, b"\xff\xfe"),
    (GENERATE_PATH, b"[]"),
    (GENERATE_PATH, b'{"generationConfig": {}}'),
    (STREAM_PATH + "?alt=sse", b'{"contents": []}'),
])
async def test_bad_requests_are_invalid_argument(proxy, path, body):
    answer = await post(proxy, path, body)
    assert answer.status == 400
    google_error(answer.body, 400, "INVALID_ARGUMENT")
    assert proxy.fake.calls_to("chat/completion") == []


@pytest.mark.parametrize("path", ["/v1beta/models/totally-custom:generateContent",
                                  "/v1/models/deepseek-v9-imaginary:streamGenerateContent",
                                  "/v1beta/models/totally-custom:countTokens"])
async def test_unknown_models_are_not_found_as_google_says(proxy, path):
    answer = await post(proxy, path, HELLO)
    assert answer.status == 404
    assert "is not available" in google_error(answer.body, 404, "NOT_FOUND")["message"]
    assert proxy.fake.calls_to("chat/completion") == []


async def test_get_on_an_action_url_is_method_not_allowed(proxy):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/v1beta/models/{MODEL}:streamGenerateContent",
                            headers={"x-goog-api-key": proxy.key}) as resp:
            status, body = resp.status, await resp.read()
    assert status == 405
    google_error(body, 405, "UNIMPLEMENTED")


async def test_unknown_method_is_not_found(proxy):
    answer = await post(proxy, f"/v1beta/models/{MODEL}:predictLongRunning", HELLO)
    assert answer.status == 404
    google_error(answer.body, 404, "NOT_FOUND")


async def test_oversized_body_is_413_in_google_shape(proxy_factory):
    proxy = await proxy_factory({"runtime": {"max_body_bytes": 4096}})
    big = {"contents": [{"role": "user", "parts": [{"text": "x" * 10000}]}]}
    answer = await post(proxy, GENERATE_PATH, big)
    assert answer.status == 413
    google_error(answer.body, 413, "INVALID_ARGUMENT")


@pytest.mark.parametrize("how", ["x-goog-api-key", "bearer", "query"])
async def test_each_credential_form_is_accepted_and_checked(proxy_factory, how):
    proxy = await proxy_factory({"auth": {"allow_passthrough": False}})

    def sent(key: str) -> tuple[str, dict]:
        if how == "query":
            return f"?key={key}", {"x-goog-api-key": ""}
        if how == "bearer":
            return "", {"x-goog-api-key": "", "Authorization": f"Bearer {key}"}
        return "", {"x-goog-api-key": key}

    query, headers = sent("wrong-key")
    answer = await post(proxy, GENERATE_PATH + query, HELLO, headers)
    assert answer.status == 401
    google_error(answer.body, 401, "UNAUTHENTICATED")
    proxy.fake.enqueue(Scripted(answer="in"))
    query, headers = sent(proxy.key)
    answer = await post(proxy, GENERATE_PATH + query, HELLO, headers)
    assert answer.status == 200
    assert answer.json()["candidates"][0]["content"]["parts"][-1] == {"text": "in"}


@pytest.mark.parametrize("key", ["pass%0Athrough-token", "pass%0Dthrough", "tab%09token"])
async def test_a_query_key_with_a_control_character_is_401_not_500(proxy, key):
    """``?key=`` is the one credential that can carry a line break (a header
    cannot): as a pass-through DeepSeek token it reached the HTTP client,
    which refused it as header injection, and the caller got a 500."""
    answer = await post(proxy, f"{GENERATE_PATH}?key={key}", HELLO, {"x-goog-api-key": ""})
    error = google_error(answer.body, 401, "UNAUTHENTICATED")
    assert answer.status == 401 and "control character" in error["message"]
    assert "through" not in error["message"] and proxy.fake.calls == []


async def test_count_tokens_parses_a_big_body_off_the_loop(proxy, monkeypatch):
    """countTokens parsed on the event loop while generateContent did not: a
    12 MB inline image held every other request for ~120 ms."""
    from ds2proxy_plugins.gemini import routes
    seen, original = [], routes.parse_generate_request
    monkeypatch.setattr(routes, "parse_generate_request", lambda *args, **kwargs: seen.append(
        threading.get_ident()) or original(*args, **kwargs))
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(200_000)).decode()
    body = {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": image}},
                                    {"text": "what"}]}]}
    answer = await post(proxy, f"/v1beta/models/{MODEL}:countTokens", body)
    assert answer.status == 200 and answer.json()["totalTokens"] > 0
    assert seen and threading.get_ident() not in seen


def assert_retry_info(answer: Reply) -> None:
    assert answer.status == 429 and int(answer.headers["Retry-After"]) >= 1
    error = google_error(answer.body, 429, "RESOURCE_EXHAUSTED")
    retry = [d for d in error["details"] if d["@type"] == RETRY_INFO]
    assert retry == [{"@type": RETRY_INFO, "retryDelay": f"{answer.headers['Retry-After']}s"}]


async def test_full_pool_is_429_with_retry_info(proxy_factory):
    proxy = await proxy_factory({"runtime": {"account_max_inflight": 1,
                                             "account_max_queue": 0}})
    slow = Delivery(chunk_delay=0.05)
    proxy.fake.enqueue(*[Scripted(answer="x" * 200, chunk_size=1, delivery=slow)
                         for _ in range(2)])
    sent = {"x-goog-api-key": proxy.key}
    async with aiohttp.ClientSession() as http:
        busy = [await http.post(proxy.url + STREAM_PATH + "?alt=sse", json=HELLO, headers=sent)
                for _ in range(2)]
        for resp in busy:
            assert resp.status == 200
            await resp.content.readline()
        assert proxy.core.pool.inflight == 2
        answer = await post(proxy, STREAM_PATH + "?alt=sse", HELLO)
        for resp in busy:
            resp.close()
    assert_retry_info(answer)


async def test_upstream_rate_limit_is_429_with_retry_info(proxy):
    proxy.fake.enqueue(HttpFault(429), HttpFault(429))
    assert_retry_info(await post(proxy, GENERATE_PATH, HELLO))
    assert proxy.core.pool.inflight == 0


# -- Gemini CLI ------------------------------------------------------------------

FORWARDED = ("User-Agent", "x-goog-api-client", "Content-Type", "Accept")


def agent_request(fixtures_dir, name: str) -> dict:
    return json.loads((fixtures_dir / "agent-requests" / name).read_text())


async def send_as_recorded(proxy, recorded: dict) -> Reply:
    headers = {k: v for k, v in recorded["headers"].items() if k in FORWARDED}
    headers["x-goog-api-key"] = proxy.key
    return await post(proxy, recorded["path"], recorded["body"], headers)


@pytest.mark.parametrize("name", ["gemini-cli-0.61-first-turn.json",
                                  "gemini-cli-0.61-tool-result-turn.json"])
async def test_gemini_cli_turns_as_recorded_end_with_a_finish_reason(proxy, fixtures_dir, name):
    recorded = agent_request(fixtures_dir, name)
    proxy.fake.enqueue(Scripted(thinking="Considering.", answer="Hi! How can I help?"))
    answer = await send_as_recorded(proxy, recorded)
    assert answer.status == 200
    chunks = [json.loads(f) for f in sse_frames(answer.body)]
    assert text_of(chunks) == "Hi! How can I help?"
    assert_last_chunk(chunks[-1])
    for chunk in chunks[:-1]:  # Gemini CLI drops chunks with an empty text part
        assert all(p.get("text") != "" for p in chunk["candidates"][0]["content"]["parts"])
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "say hi" in prompt or "Process Group PGID" in prompt


async def test_gemini_cli_shell_call_carries_the_scripted_arguments_exactly(proxy,
                                                                           fixtures_dir):
    arguments = {"command": "printf '%s\\n' \"a <b> & 'c'\" | tee /tmp/out.txt",
                 "description": "Write a marker file", "dir_path": "/home/user/project",
                 "is_background": False, "delay_ms": 250}
    script = render_tool_calls([ToolCall("x", "run_shell_command", arguments)])
    proxy.fake.enqueue(Scripted(answer=script, chunk_size=7))
    recorded = agent_request(fixtures_dir, "gemini-cli-0.61-tool-result-turn.json")
    answer = await send_as_recorded(proxy, recorded)
    chunks = [json.loads(f) for f in sse_frames(answer.body)]
    assert answer.status == 200
    assert calls_of(chunks) == [{"name": "run_shell_command", "args": arguments}]
    assert text_of(chunks).strip() == ""
    assert_last_chunk(chunks[-1])


@pytest.mark.parametrize("answer", [
    '{"complexity_reasoning": "A greeting.", "complexity_score": 3}',
    'Sure:\n```json\n{"complexity_reasoning": "A greeting.", "complexity_score": 3}\n```',
])
async def test_gemini_cli_router_call_gets_bare_schema_json(proxy, fixtures_dir, answer):
    proxy.fake.enqueue(Scripted(answer=answer))
    recorded = agent_request(fixtures_dir, "gemini-cli-0.61-router-json-mode.json")
    answer = await send_as_recorded(proxy, recorded)
    assert answer.status == 200
    parts = answer.json()["candidates"][0]["content"]["parts"]
    text = "".join(p["text"] for p in parts if not p.get("thought"))
    assert json.loads(text) == {"complexity_reasoning": "A greeting.", "complexity_score": 3}



async def test_gemini_cli_router_gets_a_4xx_when_no_json_comes(proxy, fixtures_dir):
    # Gemini CLI retries a 5xx for minutes; on a 4xx its router falls back at once.
    proxy.fake.enqueue(Scripted(answer="I think it is simple."),
                       Scripted(answer="Still prose, sorry."))
    recorded = agent_request(fixtures_dir, "gemini-cli-0.61-router-json-mode.json")
    answer = await send_as_recorded(proxy, recorded)
    assert answer.status == 422
    google_error(answer.body, 422, "FAILED_PRECONDITION")
    assert "JSON" in answer.json()["error"]["message"]
    assert proxy.core.pool.inflight == 0
