"""The Messages stream on the wire: byte format, event order, block bookkeeping,
in-band errors, and Claude Code's own requests sent as recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from ds2proxy.testing import Delivery, Replay, Scripted, load_expected
from ds2proxy.testing.clients import Reply
from ds2proxy.testing.clients import post as raw_post

TOOLS = [{"name": "Bash", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
    "required": ["command"]}}]
GOLDEN_ANSWER = (
    "Sure.\n\n<|DSML|tool_calls>\n  <|DSML|invoke name=\"Bash\">\n"
    "    <|DSML|parameter name=\"command\"><![CDATA[echo \"hi there\"]]></|DSML|parameter>\n"
    "    <|DSML|parameter name=\"timeout\">5000</|DSML|parameter>\n"
    "  </|DSML|invoke>\n</|DSML|tool_calls>\nDone.")
# After merging each block's deltas and masking ids, signature and token counts.
GOLDEN = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_*","type":"message","role":"assistant","model":"claude-opus-5-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":N,"output_tokens":0}}}

event: ping
data: {"type":"ping"}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Plan it."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"SIG"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Sure.\\n\\n"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_*","name":"Bash","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"command\\":\\"echo \\\\\\"hi there\\\\\\"\\",\\"timeout\\":5000}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"\\nDone."}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":N,"output_tokens_details":{"thinking_tokens":N}}}

event: message_stop
data: {"type":"message_stop"}

"""
_MASKS = [(re.compile(r'"(msg|toolu)_[A-Za-z0-9]{24}"'), r'"\1_*"'),
          (re.compile(r'"signature":"[^"]+"'), '"signature":"SIG"'),
          (re.compile(r'"(input_tokens|output_tokens|thinking_tokens)":[1-9]\d*'), r'"\1":N')]
_COPIED_HEADERS = ("anthropic-version", "anthropic-beta", "User-Agent", "X-Claude-Code-Session-Id",
                   "x-app", "Accept", "anthropic-dangerous-direct-browser-access")

Frame = tuple[str, dict]


async def post(proxy, path: str, body: dict, headers: dict | None = None) -> Reply:
    return await raw_post(proxy.url + path, body, {"x-api-key": proxy.key, **(headers or {})})


def read_frames(raw: bytes) -> list[Frame]:
    """``event:`` + one compact ``data:`` line per frame; keep-alive comments skipped."""
    assert raw.endswith(b"\n\n")
    frames = []
    for chunk in raw[:-2].split(b"\n\n"):
        lines = chunk.split(b"\n")
        if all(line.startswith(b":") for line in lines):
            continue
        event, data = lines
        assert event.startswith(b"event: ") and data.startswith(b"data: ")
        payload = json.loads(data[6:])
        assert orjson.dumps(payload) == data[6:], "data must be compact JSON"
        assert payload["type"] == event[7:].decode()
        frames.append((payload["type"], payload))
    return frames


def check_stream(frames: list[Frame]) -> list[dict]:
    """Every rule a client relies on; returns the content blocks as rebuilt."""
    names = [name for name, _ in frames]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_start") == names.count("message_stop") == 1
    blocks: list[dict] = []
    open_index: int | None = None
    for name, data in frames[1:-2]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == len(blocks)
            open_index = data["index"]
            blocks.append(dict(data["content_block"], partial_json=""))
        elif name == "content_block_delta":
            assert data["index"] == open_index
            apply_delta(blocks[open_index], data["delta"])
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        else:
            assert name == "ping"
    assert open_index is None, "every block is closed"
    for block in blocks:
        if block["type"] == "tool_use":
            block["input"] = json.loads(block["partial_json"])
        del block["partial_json"]
    return blocks


def apply_delta(block: dict, delta: dict) -> None:
    kind = delta["type"]
    if kind == "text_delta":
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] = delta["signature"]
    else:
        assert kind == "input_json_delta" and block["type"] == "tool_use"
        block["partial_json"] += delta["partial_json"]


def merged_golden_text(frames: list[Frame]) -> str:
    """Consecutive deltas of one kind in one block merged, then masked and framed."""
    merged: list[dict] = []
    for _, data in frames:
        last = merged[-1] if merged else {}
        delta, prev = data.get("delta", {}), last.get("delta", {})
        kind = delta.get("type")
        if (data["type"] == last.get("type") == "content_block_delta"
                and data["index"] == last["index"] and kind == prev.get("type")
                and kind in ("text_delta", "thinking_delta")):
            key = "text" if kind == "text_delta" else "thinking"
            prev[key] += delta[key]
            continue
        merged.append(json.loads(json.dumps(data)))
    text = "".join(f"event: {d['type']}\ndata: {orjson.dumps(d).decode()}\n\n" for d in merged)
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


async def test_golden_stream_with_thinking_text_and_a_tool_call(proxy):
    proxy.fake.enqueue(Scripted(thinking="Plan it.", answer=GOLDEN_ANSWER))
    answer = await post(proxy, "/v1/messages?beta=true", {
        "model": "claude-opus-5-5", "max_tokens": 1000, "stream": True, "tools": TOOLS,
        "messages": [{"role": "user", "content": "say hi"}]})
    assert answer.status == 200
    frames = read_frames(answer.body)
    assert merged_golden_text(frames) == GOLDEN
    check_stream(frames)


BASH_CALL = ("<|DSML|tool_calls>\n  <|DSML|invoke name=\"Bash\">\n"
             "    <|DSML|parameter name=\"command\"><![CDATA[ls]]></|DSML|parameter>\n"
             "  </|DSML|invoke>\n</|DSML|tool_calls>")


@pytest.mark.parametrize("answer", ["\n\n" + BASH_CALL, " \n" + BASH_CALL + "\n\n  "])
async def test_blank_text_around_a_call_opens_no_block(proxy, answer):
    """The newlines around a call never become a blank text block: the
    stream has the blocks the non-stream message has."""
    body = {"model": "claude-opus-5-5", "max_tokens": 1000, "tools": TOOLS,
            "messages": [{"role": "user", "content": "list"}]}
    proxy.fake.enqueue(Scripted(thinking="Plan.", answer=answer, chunk_size=1),
                       Scripted(thinking="Plan.", answer=answer, chunk_size=1))
    streamed = check_stream(read_frames((await post(proxy, "/v1/messages",
                                                    {**body, "stream": True})).body))
    whole = (await post(proxy, "/v1/messages", body)).json()["content"]
    assert [b["type"] for b in streamed] == [b["type"] for b in whole] == [
        "thinking", "tool_use"]
    assert streamed[1]["input"] == whole[1]["input"] == {"command": "ls"}


@pytest.mark.parametrize("prefix", ["/anthropic/v1", "/v1", ""])
async def test_every_prefix_streams(proxy, prefix):
    proxy.fake.enqueue(Scripted(answer="Hello there."))
    answer = await post(proxy, f"{prefix}/messages?beta=true", {
        "model": "claude-sonnet-5-5", "max_tokens": 100, "stream": True,
        "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status == 200
    assert check_stream(read_frames(answer.body)) == [{"type": "text", "text": "Hello there."}]


async def test_every_recording_streams_exactly(proxy, fixtures_dir: Path):
    samples = sorted(p for p in (fixtures_dir / "deepseek-sse").iterdir() if p.is_dir())
    assert samples
    for sample in samples:
        expected = load_expected(sample)
        proxy.fake.enqueue(Replay(sample))
        answer = await post(proxy, "/anthropic/v1/messages", {
            "model": "claude-opus-5-5", "max_tokens": 128000, "stream": True,
            "messages": [{"role": "user", "content": "replay"}]})
        assert answer.status == 200
        blocks = check_stream(read_frames(answer.body))
        assert [b["type"] for b in blocks] == ["thinking", "text"], sample.name
        assert blocks[0]["thinking"] == expected["thinking"], sample.name
        assert blocks[1]["text"] == expected["content"], sample.name


async def test_keep_alives_while_the_upstream_is_silent(proxy_factory):
    proxy = await proxy_factory({"runtime": {"keepalive_seconds": 0.05}})
    proxy.fake.enqueue(Scripted(answer="late", delivery=Delivery(silence=0.4,
                                                                 comment_every=0.1)))
    answer = await post(proxy, "/v1/messages", {
        "model": "claude-sonnet-5-5", "max_tokens": 100, "stream": True,
        "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status == 200 and b": keep-alive\n\n" in answer.body
    assert check_stream(read_frames(answer.body)) == [{"type": "text", "text": "late"}]


async def test_failure_after_output_ends_with_an_error_event(proxy):
    proxy.fake.enqueue(Scripted(answer="word " * 100, delivery=Delivery(drop_after=12)))
    answer = await post(proxy, "/v1/messages", {
        "model": "claude-sonnet-5-5", "max_tokens": 1000, "stream": True,
        "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status == 200
    frames = read_frames(answer.body)
    names = [name for name, _ in frames]
    assert names[0] == "message_start" and "content_block_delta" in names
    assert names[-1] == "error" and "message_stop" not in names
    error = frames[-1][1]["error"]
    assert error["type"] == "api_error" and error["message"]


async def test_required_tool_choice_without_a_call_fails_in_band(proxy):
    proxy.fake.enqueue(Scripted(answer="I would rather not call anything."))
    answer = await post(proxy, "/v1/messages", {
        "model": "claude-sonnet-5-5", "max_tokens": 1000, "stream": True, "tools": TOOLS,
        "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status == 200
    name, data = read_frames(answer.body)[-1]
    assert name == "error" and data["error"]["type"] == "invalid_request_error"
    assert data["error"]["code"] == "tool_choice_violation"


def claude_code_request(fixtures_dir: Path, name: str, proxy) -> tuple[str, dict, dict]:
    recorded = json.loads((fixtures_dir / "agent-requests" / name).read_text())
    headers = {k: v for k, v in recorded["headers"].items() if k in _COPIED_HEADERS}
    headers["x-api-key"] = proxy.key
    return recorded["path"], recorded["body"], headers


@pytest.mark.parametrize("name", ["claude-code-2.1.330-first-turn.json",
                                  "claude-code-2.1.330-tool-result-turn.json"])
@pytest.mark.parametrize("stream", [True, False])
async def test_claude_code_requests_sent_as_recorded(proxy, fixtures_dir: Path, name, stream):
    path, body, headers = claude_code_request(fixtures_dir, name, proxy)
    assert path == "/v1/messages?beta=true"
    proxy.fake.enqueue(Scripted(thinking="Considering.", answer="Done, nothing else to do."))
    answer = await post(proxy, path, dict(body, stream=stream), headers)
    assert answer.status == 200
    if stream:
        blocks = check_stream(read_frames(answer.body))
        stop_reason = read_frames(answer.body)[-2][1]["delta"]["stop_reason"]
    else:
        message = answer.json()
        blocks, stop_reason = message["content"], message["stop_reason"]
        assert message["model"] == body["model"] and message["type"] == "message"
    assert [b["type"] for b in blocks] == ["thinking", "text"]
    assert blocks[1]["text"] == "Done, nothing else to do." and stop_reason == "end_turn"
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "Tool: Bash\n" in prompt and "Tool: DeferredToolPlaceholder" in prompt
    if "tool-result" in name:
        assert "(Bash completed with no output)" in prompt


@pytest.mark.parametrize("stream", [True, False])
async def test_claude_code_bash_call_carries_the_arguments_exactly(proxy, fixtures_dir: Path,
                                                                   stream):
    path, body, headers = claude_code_request(fixtures_dir, "claude-code-2.1.330-first-turn.json",
                                              proxy)
    arguments: dict[str, Any] = {"command": "touch /home/user/project/marker1 && echo 'a <b> & \"c\"'",
                                 "description": "Create the marker file", "timeout": 120000}
    proxy.fake.enqueue(Scripted(answer=(
        "<|DSML|tool_calls>\n  <|DSML|invoke name=\"Bash\">\n"
        f"    <|DSML|parameter name=\"command\"><![CDATA[{arguments['command']}]]></|DSML|parameter>\n"
        "    <|DSML|parameter name=\"description\"><![CDATA[Create the marker file]]>"
        "</|DSML|parameter>\n"
        "    <|DSML|parameter name=\"timeout\">120000</|DSML|parameter>\n"
        "  </|DSML|invoke>\n</|DSML|tool_calls>")))
    answer = await post(proxy, path, dict(body, stream=stream), headers)
    assert answer.status == 200
    if stream:
        blocks = check_stream(read_frames(answer.body))
    else:
        message = answer.json()
        blocks = message["content"]
        assert message["stop_reason"] == "tool_use"
    calls = [b for b in blocks if b["type"] == "tool_use"]
    assert len(calls) == 1 and calls[0]["name"] == "Bash"
    assert calls[0]["input"] == arguments
    assert not any(b["type"] == "text" for b in blocks)
