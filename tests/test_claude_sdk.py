"""The official ``anthropic`` client (sync and async, stream and not) against a live
server on the fake upstream: recordings, thinking, tool loops, count_tokens, models."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import anthropic
import pytest

from conftest import FIXTURES
from ds2proxy.testing import HttpFault, Replay, Scripted, SearchHit, load_expected
from ds2proxy.testing.clients import anthropic_client, openai_client

MODES = [("sync", False), ("sync", True), ("async", False), ("async", True)]
LONG_RECORDING_BYTES = 1 << 19
MARKUP = re.compile(r"DSML|invoke|tool_calls|parameter|CDATA", re.IGNORECASE)
TOOLS = [
    {"name": "Bash", "description": "Run a shell command.",
     "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                      "required": ["command"]}},
    {"name": "Read", "description": "Read a file.",
     "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                      "required": ["file_path"]}},
]
TWO_CALLS = (
    "I will look.\n\n"
    "<|DSML|tool_calls>\n"
    "  <|DSML|invoke name=\"Bash\">\n"
    "    <|DSML|parameter name=\"command\"><![CDATA[ls -la /tmp]]></|DSML|parameter>\n"
    "  </|DSML|invoke>\n"
    "  <|DSML|invoke name=\"Read\">\n"
    "    <|DSML|parameter name=\"file_path\"><![CDATA[/tmp/a.txt]]></|DSML|parameter>\n"
    "  </|DSML|invoke>\n"
    "</|DSML|tool_calls>")


def clients(proxy, **auth: Any) -> tuple[anthropic.Anthropic, anthropic.AsyncAnthropic]:
    # An explicit timeout: the SDK refuses large non-stream max_tokens under its default.
    return (anthropic_client(proxy, "/anthropic", sync=True, timeout=30.0, **auth),
            anthropic_client(proxy, "/anthropic", timeout=30.0, **auth))


async def ask(proxy, mode: str, stream: bool, **kwargs: Any) -> anthropic.types.Message:
    """One Messages call the way an application makes it, returning the final message."""
    kwargs.setdefault("model", "claude-opus-5-5")
    kwargs.setdefault("max_tokens", 128000)
    kwargs.setdefault("messages", [{"role": "user", "content": "hello"}])
    sync_client, async_client = clients(proxy)
    if mode == "async":
        if not stream:
            return await async_client.messages.create(**kwargs)
        async with async_client.messages.stream(**kwargs) as events:
            return await events.get_final_message()

    def run() -> anthropic.types.Message:
        if not stream:
            return sync_client.messages.create(**kwargs)
        with sync_client.messages.stream(**kwargs) as events:
            return events.get_final_message()

    return await asyncio.to_thread(run)


def texts(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def last_prompt(proxy) -> str:
    return proxy.fake.calls_to("chat/completion")[-1].body["prompt"]


def recording_cases() -> list[tuple[str, str, bool]]:
    """Every recording in every mode, except that a long recording (tens of
    thousands of stream events) runs once, non-stream: its stream is checked
    frame by frame in test_claude_sse, which keeps the suite fast."""
    root = FIXTURES / "deepseek-sse"
    samples = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [(p.name, mode, stream) for p in samples for mode, stream in MODES
            if not _is_long(p) or (mode, stream) == ("async", False)]


def _is_long(sample: Path) -> bool:
    return (sample / "upstream.stream.sse").stat().st_size > LONG_RECORDING_BYTES


def test_recordings_are_present(fixtures_dir: Path):
    assert len(recording_cases()) >= 3 * len(MODES) + 1


@pytest.mark.parametrize("name, mode, stream", recording_cases())
async def test_recording_reconstructs_exactly(proxy, fixtures_dir: Path, name, mode, stream):
    sample = fixtures_dir / "deepseek-sse" / name
    expected = load_expected(sample)
    proxy.fake.enqueue(Replay(sample))
    message = await ask(proxy, mode, stream)
    assert [b.type for b in message.content] == ["thinking", "text"]
    thinking, text = message.content
    assert thinking.thinking == expected["thinking"]
    assert text.text == expected["content"]
    assert thinking.signature
    assert message.stop_reason == "end_turn"
    assert message.model == "claude-opus-5-5"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert len(proxy.fake.calls_to("chat/continue")) == expected["rounds"] - 1


async def test_fast_model_answers_without_thinking_blocks(proxy, fixtures_dir: Path):
    sample = fixtures_dir / "deepseek-sse" / "markdown-format-example-20260405-spacefix"
    proxy.fake.enqueue(Replay(sample))
    message = await ask(proxy, "async", True, model="claude-sonnet-5-5")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == load_expected(sample)["content"]
    assert proxy.fake.calls_to("chat/completion")[-1].body["thinking_enabled"] is False


@pytest.mark.parametrize("stream", [False, True])
async def test_requested_thinking_shows_blocks_on_a_fast_model(proxy, stream):
    proxy.fake.enqueue(Scripted(thinking="Weighing it.", answer="Yes."))
    message = await ask(proxy, "async", stream, model="claude-haiku-5-5",
                        thinking={"type": "enabled", "budget_tokens": 2048})
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None))
            for b in message.content] == [("thinking", "Weighing it."), ("text", "Yes.")]
    assert proxy.fake.calls_to("chat/completion")[-1].body["thinking_enabled"] is True


async def test_claude_mapping_decides_the_native_model(proxy_factory):
    proxy = await proxy_factory({"claude_mapping": {"fast": "deepseek-reasoner"}})
    proxy.fake.enqueue(Scripted(thinking="Mapped.", answer="Slow path."))
    message = await ask(proxy, "async", False, model="claude-sonnet-5-5")
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.model == "claude-sonnet-5-5"
    assert proxy.fake.calls_to("chat/completion")[-1].body["thinking_enabled"] is True


@pytest.mark.parametrize("mode, stream", MODES)
async def test_two_step_tool_loop_with_parallel_calls(proxy, mode, stream):
    question = {"role": "user", "content": "What is in /tmp and in /tmp/a.txt?"}
    proxy.fake.enqueue(Scripted(thinking="Two lookups.", answer=TWO_CALLS))
    first = await ask(proxy, mode, stream, tools=TOOLS, messages=[question])
    assert first.stop_reason == "tool_use"
    calls = [b for b in first.content if b.type == "tool_use"]
    assert [(c.name, c.input) for c in calls] == [
        ("Bash", {"command": "ls -la /tmp"}), ("Read", {"file_path": "/tmp/a.txt"})]
    assert all(re.fullmatch(r"toolu_[A-Za-z0-9]{24}", c.id) for c in calls)
    assert calls[0].id != calls[1].id
    assert texts(first).strip() == "I will look."
    assert not MARKUP.search(texts(first))

    results = [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "a.txt b.txt"},
               {"type": "tool_result", "tool_use_id": calls[1].id,
                "content": [{"type": "text", "text": "hello from a"}]}]
    history = [question,
               {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                 for b in first.content]},
               {"role": "user", "content": results}]
    proxy.fake.enqueue(Scripted(thinking="Summing up.", answer="Two files; a.txt says hello."))
    final = await ask(proxy, mode, stream, tools=TOOLS, messages=history)
    assert final.stop_reason == "end_turn"
    assert texts(final) == "Two files; a.txt says hello."
    prompt = last_prompt(proxy)
    assert f"[tool_result name=Bash id={calls[0].id}]\na.txt b.txt" in prompt
    assert f"[tool_result name=Read id={calls[1].id}]\nhello from a" in prompt
    assert 'invoke name="Bash"' in prompt and "Two lookups." in prompt
    assert first.content[0].signature not in prompt


async def test_single_call_mode_keeps_only_the_first_call(proxy):
    proxy.fake.enqueue(Scripted(answer=TWO_CALLS))
    message = await ask(proxy, "async", True, tools=TOOLS, tool_choice={
        "type": "auto", "disable_parallel_tool_use": True})
    assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == [
        ("Bash", {"command": "ls -la /tmp"})]
    assert "at most one tool" in last_prompt(proxy)


async def test_tool_choice_none_never_calls_and_never_leaks(proxy):
    proxy.fake.enqueue(Scripted(answer=TWO_CALLS))
    message = await ask(proxy, "async", False, tools=TOOLS, tool_choice={"type": "none"})
    assert message.stop_reason == "end_turn"
    assert all(b.type != "tool_use" for b in message.content)
    assert not MARKUP.search(texts(message))
    assert "Tool: Bash" not in last_prompt(proxy)


WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_forced_server_tool_is_answered_in_text_without_a_call(proxy, stream):
    """Anthropic runs server tools itself; here they have no upstream. Forcing
    one used to be a 400 'not declared'; it is now answered in text, and a
    call the model writes to a client tool is not passed off as the forced one."""
    proxy.fake.enqueue(Scripted(answer=TWO_CALLS))
    message = await ask(proxy, "async", stream, tools=[*TOOLS, WEB_SEARCH],
                        tool_choice={"type": "tool", "name": "web_search"})
    assert message.stop_reason == "end_turn"
    assert all(b.type != "tool_use" for b in message.content)
    assert texts(message).strip() == "I will look."
    assert not MARKUP.search(texts(message))
    assert "Tool: web_search" not in last_prompt(proxy)


@pytest.mark.parametrize("stream", [False, True])
async def test_any_with_only_server_tools_is_a_plain_answer(proxy, stream):
    proxy.fake.enqueue(Scripted(answer="Paris."))
    message = await ask(proxy, "async", stream, tools=[WEB_SEARCH], tool_choice={"type": "any"})
    assert (message.stop_reason, texts(message)) == ("end_turn", "Paris.")
    _, client = clients(proxy)
    counted = await client.messages.count_tokens(
        model="claude-opus-5-5", tools=[WEB_SEARCH], tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "hello"}])
    assert counted.input_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_web_search_server_tool_is_served_by_the_web_chat_s_own_search(proxy, stream):
    """Declared (or forced), the web search tool turns the web chat's search
    on for the turn, so the answer is grounded in what it found; the tool was
    dropped and the model answered from memory."""
    proxy.fake.enqueue(Scripted(answer="Paris [reference:0][reference:1].",
                                search=[SearchHit("https://a.example/", "A"),
                                        SearchHit("https://b.example/", "B")]))
    question = {"role": "user", "content": "Capital of France?"}
    message = await ask(proxy, "async", stream, model="claude-sonnet-5-5",
                        tools=[*TOOLS, WEB_SEARCH], messages=[question])
    assert proxy.fake.calls_to("chat/completion")[-1].body["search_enabled"] is True
    assert texts(message) == "Paris [reference:0][reference:1]."  # citation_style raw
    # The pages cited are the tool's result, as Anthropic answers a web search.
    assert [b.type for b in message.content] == ["text", "server_tool_use",
                                                 "web_search_tool_result"]
    call, found = message.content[1:]
    assert (call.name, found.tool_use_id) == ("web_search", call.id)
    assert re.fullmatch(r"srvtoolu_[A-Za-z0-9]{24}", call.id)
    assert [(r.url, r.title) for r in found.content] == [("https://a.example/", "A"),
                                                         ("https://b.example/", "B")]
    assert message.usage.server_tool_use.web_search_requests == 1
    proxy.fake.enqueue(Scripted(answer="It is."))
    history = [question, {"role": "assistant", "content": [
        b.model_dump(exclude_none=True) for b in message.content]},
        {"role": "user", "content": "Sure?"}]
    await ask(proxy, "async", stream, model="claude-sonnet-5-5", tools=[*TOOLS, WEB_SEARCH],
              messages=history)
    prompt = last_prompt(proxy)
    assert "[web search results]\n- A: https://a.example/\n- B: https://b.example/" in prompt
    assert "server_tool_use" not in prompt and "encrypted_content" not in prompt
    proxy.fake.enqueue(Scripted(answer="ok"))
    await ask(proxy, "async", stream, model="claude-sonnet-5-5", tools=[WEB_SEARCH],
              tool_choice={"type": "tool", "name": "web_search"})
    assert proxy.fake.calls_to("chat/completion")[-1].body["search_enabled"] is True
    for choice in ({"type": "none"}, {"type": "tool", "name": "Bash"}):
        proxy.fake.enqueue(Scripted(answer=TWO_CALLS))
        await ask(proxy, "async", stream, model="claude-sonnet-5-5",
                  tools=[*TOOLS, WEB_SEARCH], tool_choice=choice)
        assert proxy.fake.calls_to("chat/completion")[-1].body["search_enabled"] is False


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_defined_client_tools_are_declared_and_called(proxy, stream):
    """bash_… and text_editor_… tools carry no input_schema but are run by the
    client: they were skipped as server tools, so the model never heard of
    them and forcing one was a 400."""
    tools = [{"type": "bash_20250124", "name": "bash"},
             {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool",
              "max_characters": 10000}]
    call = ('<|DSML|tool_calls>\n<|DSML|invoke name="bash">\n<|DSML|parameter name="command">'
            '<![CDATA[ls]]></|DSML|parameter>\n</|DSML|invoke>\n</|DSML|tool_calls>')
    proxy.fake.enqueue(Scripted(answer=call))
    message = await ask(proxy, "async", stream, tools=tools)
    assert message.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == [
        ("bash", {"command": "ls"})]
    prompt = last_prompt(proxy)
    assert "Tool: bash" in prompt and "Tool: str_replace_based_edit_tool" in prompt
    assert "str_replace" in prompt and "old_str" in prompt


async def test_tool_results_with_errors_reach_the_prompt(proxy):
    history = [{"role": "user", "content": "run"},
               {"role": "assistant", "content": [
                   {"type": "tool_use", "id": "toolu_prev", "name": "Bash",
                    "input": {"command": "false"}}]},
               {"role": "user", "content": [
                   {"type": "tool_result", "tool_use_id": "toolu_prev", "is_error": True,
                    "content": "exit status 1"},
                   {"type": "text", "text": "why?"}]}]
    proxy.fake.enqueue(Scripted(answer="It failed."))
    message = await ask(proxy, "async", False, tools=TOOLS, messages=history)
    assert texts(message) == "It failed."
    prompt = last_prompt(proxy)
    assert "[tool error]\nexit status 1" in prompt
    assert prompt.index("exit status 1") < prompt.rindex("why?")


@pytest.mark.parametrize("stream", [False, True])
async def test_calls_only_to_undeclared_tools_are_no_rate_limit(proxy, stream):
    """An answer that was only a refused call (a tool the request does not
    declare) is asked again once, then ends as an empty answer on the same
    account: it used to be taken for a rate-limited account's empty output,
    which cooled every account in turn and gave the client a 429."""
    refused = "<|DSML|tool_calls>" + TWO_CALLS.split("<|DSML|tool_calls>")[1].replace(
        '"Bash"', '"Grep"').replace('"Read"', '"Glob"')
    proxy.fake.enqueue(Scripted(answer=refused), Scripted(answer=refused))
    message = await ask(proxy, "async", stream, tools=TOOLS)
    assert message.stop_reason == "end_turn"
    assert message.content == []
    calls = proxy.fake.calls_to("chat/completion")
    assert len(calls) == 2 and calls[0].account == calls[1].account
    assert proxy.core.pool.health.state(calls[0].account) == "healthy"


@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_only_when_the_limit_is_hit(proxy, stream):
    proxy.fake.enqueue(Scripted(answer="many words here " * 40))
    limited = await ask(proxy, "async", stream, model="claude-sonnet-5-5", max_tokens=8)
    assert limited.stop_reason == "max_tokens"
    proxy.fake.enqueue(Scripted(answer="short"))
    normal = await ask(proxy, "async", stream, model="claude-sonnet-5-5", max_tokens=8)
    assert normal.stop_reason == "end_turn" and texts(normal) == "short"


@pytest.mark.parametrize("stream", [False, True])
async def test_content_filter_is_a_refusal_keeping_the_partial_answer(proxy, stream):
    proxy.fake.enqueue(Scripted(answer="Partial answer.", content_filter=True))
    message = await ask(proxy, "async", stream, model="claude-sonnet-5-5")
    assert message.stop_reason == "refusal"
    assert texts(message) == "Partial answer."


async def test_filtered_stream_without_text_ends_as_refusal_with_no_content(proxy):
    proxy.fake.enqueue(Scripted(answer="", content_filter=True))
    message = await ask(proxy, "async", True, model="claude-sonnet-5-5")
    assert (message.stop_reason, message.content) == ("refusal", [])


async def test_filtered_non_stream_without_text_is_a_400(proxy):
    proxy.fake.enqueue(Scripted(answer="", content_filter=True))
    with pytest.raises(anthropic.BadRequestError) as info:
        await ask(proxy, "async", False, model="claude-sonnet-5-5")
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert info.value.body["error"]["code"] == "content_filter"


async def test_sampling_fields_and_stop_sequences_reach_the_upstream(proxy):
    proxy.fake.enqueue(Scripted(answer="ok"))
    await ask(proxy, "async", False, model="claude-sonnet-5-5", stop_sequences=["STOP"],
              extra_body={"temperature": 0.3})
    body = proxy.fake.calls_to("chat/completion")[-1].body
    assert (body["temperature"], body["stop"]) == (0.3, ["STOP"])


async def test_an_unknown_model_raises_the_sdk_s_not_found_error(proxy):
    with pytest.raises(anthropic.NotFoundError) as caught:
        await ask(proxy, "async", False, model="claude-2.1")
    assert "claude-2.1" in caught.value.message


async def test_bearer_auth_works(proxy):
    proxy.fake.enqueue(Scripted(answer="authorised"))
    _, client = clients(proxy, auth_token=proxy.key, api_key=None)
    message = await client.messages.create(model="claude-sonnet-5-5", max_tokens=100,
                                           messages=[{"role": "user", "content": "hi"}])
    assert texts(message) == "authorised"


async def test_count_tokens_matches_the_prompt_a_turn_sends(proxy):
    _, client = clients(proxy)
    request = {"model": "claude-opus-5-5", "system": [{"type": "text", "text": "Be terse."}],
               "messages": [{"role": "user", "content": "Count me, please."}]}
    plain = await client.messages.count_tokens(**request)
    with_tools = await client.messages.count_tokens(**request, tools=TOOLS)
    assert 0 < plain.input_tokens < with_tools.input_tokens
    proxy.fake.enqueue(Scripted(answer="counted"))
    message = await client.messages.create(**request, tools=TOOLS, max_tokens=100)
    assert message.usage.input_tokens == with_tools.input_tokens


async def test_model_list_pages_and_retrieves(proxy):
    _, client = clients(proxy)
    first = await client.models.list()
    ids = [m.id for m in first.data]
    assert {"claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"} <= set(ids)
    assert any(i.startswith("claude-3-") for i in ids)
    paged = [m.id async for m in client.models.list(limit=4)]
    assert len(paged) >= len(ids) and paged[:len(ids)] == ids
    opus = await client.models.retrieve("claude-opus-5-5")
    assert (opus.type, opus.display_name) == ("model", "Claude Opus 5.5")
    assert opus.created_at.year >= 2026
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("not-a-model")


async def test_model_list_at_a_root_base_url_is_anthropics(proxy):
    # Claude Code's ANTHROPIC_BASE_URL is the bare root: its SDK lists at /v1/models,
    # which OpenAI clients share; each must get its own family's shape.
    client = anthropic_client(proxy, timeout=30.0)
    page = await client.models.list(limit=3)
    assert [m.id for m in page.data] == ["claude-opus-5-5", "claude-sonnet-5-5",
                                         "claude-haiku-5-5"]
    assert page.has_more is True and page.first_id == "claude-opus-5-5"
    assert all(m.type == "model" and m.display_name and m.created_at for m in page.data)
    opus = await client.models.retrieve("claude-opus-5-5")
    assert (opus.id, opus.display_name) == ("claude-opus-5-5", "Claude Opus 5.5")
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("not-a-model")
    async with openai_client(proxy) as openai_api:
        listed = await openai_api.models.list()
    assert "deepseek-chat" in [m.id for m in listed.data]
    assert all(m.object == "model" for m in listed.data)


async def test_responses_and_errors_carry_the_request_id_the_sdk_reads(proxy):
    _, client = clients(proxy)
    proxy.fake.enqueue(Scripted(answer="hi"))
    raw = await client.messages.with_raw_response.create(
        model="claude-opus-5-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert raw.request_id and raw.request_id == raw.headers["x-request-id"]
    assert (await raw.parse())._request_id == raw.request_id
    proxy.fake.enqueue(HttpFault(429), HttpFault(429))
    with pytest.raises(anthropic.RateLimitError) as failure:
        await client.messages.create(model="claude-opus-5-5", max_tokens=100,
                                     messages=[{"role": "user", "content": "hi"}])
    assert failure.value.request_id and failure.value.request_id.startswith("req_")
    assert failure.value.body["error"]["request_id"] == failure.value.request_id


USED = {"role": "assistant", "content": [
    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fields, param", [
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[0].content[0].text"),
    ({"tools": [{"description": "nameless", "input_schema": {"type": "object"}}]},
     "tools[0].name"),
    ({"tools": [{"name": "f", "input_schema": "x"}]}, "tools[0].input_schema"),
    # Anthropic refuses a repeated name (ds2proxy called the first one).
    ({"tools": [TOOLS[0], {**TOOLS[1], "name": "Bash"}]}, "tools: Tool names must be unique"),
    ({"system": [5]}, "system[0]"),
    ({"thinking": {"type": "enabled", "budget_tokens": "lots"}}, "thinking.budget_tokens"),
])
async def test_malformed_blocks_roles_and_tools_are_400s_before_any_work(
        proxy, fields, param, stream):
    """Each used to be dropped or guessed at and the turn run anyway; now a 400
    names the field, before a stream starts and before any upstream work."""
    with pytest.raises(anthropic.BadRequestError) as info:
        await ask(proxy, "async", stream, **fields)
    error = info.value.body["error"]
    assert error["type"] == "invalid_request_error" and param in error["message"]
    assert proxy.fake.calls == [] and proxy.core.pool.inflight == 0


@pytest.mark.parametrize("use_id", ["toolu_1", "toolu_9"])
async def test_a_tool_result_is_served_whether_or_not_its_tool_use_is_in_the_history(
        proxy, use_id):
    """The conversion is lenient (prompt-compat 4.3): a client that trimmed
    the tool use from its history still gets an answer."""
    proxy.fake.enqueue(Scripted(answer="done"))
    message = await ask(proxy, "async", False, messages=[
        {"role": "user", "content": "look it up"}, USED, {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use_id, "content": "42"}]}])
    assert texts(message) == "done"
    assert "42" in proxy.fake.calls_to("chat/completion")[-1].body["prompt"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("budget, max_tokens", [(1023, 4096), (0, 4096), (4096, 4096),
                                                (8000, 4096)])
async def test_a_thinking_budget_out_of_anthropic_s_bounds_is_a_400(proxy, stream, budget,
                                                                    max_tokens):
    """budget_tokens must be at least 1024 and below max_tokens (Anthropic
    answers 400 invalid_request_error); any integer used to be taken."""
    with pytest.raises(anthropic.BadRequestError) as info:
        await ask(proxy, "async", stream, max_tokens=max_tokens,
                  thinking={"type": "enabled", "budget_tokens": budget})
    error = info.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert "thinking.budget_tokens" in error["message"]
    assert proxy.fake.calls == [] and proxy.core.pool.inflight == 0


@pytest.mark.parametrize("mode, stream", MODES)
async def test_thinking_display_omitted_sends_blocks_without_text_that_round_trip(
        proxy, mode, stream):
    """Claude Code sends thinking.display "omitted" on every turn: thinking
    blocks come back with an empty thinking field and a signature carrying
    the reasoning. The text was streamed whole; sent back empty, the
    reasoning now still reaches the next turn's prompt."""
    thinking = {"type": "adaptive", "display": "omitted"}
    question = {"role": "user", "content": "List /tmp"}
    proxy.fake.enqueue(Scripted(thinking="Plan: run ls on /tmp.", answer=TWO_CALLS))
    first = await ask(proxy, mode, stream, tools=TOOLS, thinking=thinking, messages=[question])
    block = first.content[0]
    assert (block.type, block.thinking) == ("thinking", "")
    assert block.signature and "Plan" not in block.signature
    assert [b.type for b in first.content] == ["thinking", "text", "tool_use", "tool_use"]
    calls = [b for b in first.content if b.type == "tool_use"]
    history = [question,
               {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                 for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id,
                                             "content": "ok"} for c in calls]}]
    proxy.fake.enqueue(Scripted(thinking="Done.", answer="Listed."))
    final = await ask(proxy, mode, stream, tools=TOOLS, thinking=thinking, messages=history)
    assert texts(final) == "Listed." and final.content[0].thinking == ""
    assert "Plan: run ls on /tmp." in last_prompt(proxy)


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_names_the_thinking_tokens_among_the_output_tokens(proxy, stream):
    """Claude Code's thinking-token-count beta reads output_tokens_details:
    with the thinking text omitted it has nothing else to count."""
    thinking = {"type": "adaptive", "display": "omitted"}
    proxy.fake.enqueue(Scripted(thinking="A plan in several words.", answer="Done."))
    message = await ask(proxy, "async", stream, thinking=thinking)
    details = message.usage.output_tokens_details
    assert 0 < details.thinking_tokens < message.usage.output_tokens
    proxy.fake.enqueue(Scripted(answer="Done."))
    plain = await ask(proxy, "async", stream, model="claude-sonnet-5-5")
    assert plain.usage.output_tokens_details is None


async def test_thinking_display_summarized_or_absent_shows_the_text(proxy):
    for thinking in ({"type": "enabled", "budget_tokens": 2048, "display": "summarized"},
                     {"type": "enabled", "budget_tokens": 2048}):
        proxy.fake.enqueue(Scripted(thinking="Visible plan.", answer="ok"))
        message = await ask(proxy, "async", True, thinking=thinking)
        assert message.content[0].thinking == "Visible plan."


async def test_an_unknown_thinking_display_is_a_400(proxy):
    with pytest.raises(anthropic.BadRequestError) as caught:
        await ask(proxy, "async", False, thinking={"type": "adaptive", "display": "hidden"})
    assert "thinking.display" in caught.value.message
    assert not proxy.fake.calls_to("chat/completion")


async def test_a_thinking_budget_inside_the_bounds_is_served(proxy):
    """1024 is the floor; with the interleaved-thinking beta the budget spans
    the turn's thinking blocks and may exceed max_tokens, as Anthropic allows."""
    client = anthropic_client(proxy)
    for budget, max_tokens, headers in ((1024, 1025, None), (2048, 4096, None), (
            16000, 4096, {"anthropic-beta": "interleaved-thinking-2025-05-14"})):
        proxy.fake.enqueue(Scripted(thinking="Weighing it.", answer="Yes."))
        message = await client.messages.create(
            model="claude-sonnet-4-5", max_tokens=max_tokens, extra_headers=headers,
            messages=[{"role": "user", "content": "hi"}],
            thinking={"type": "enabled", "budget_tokens": budget})
        assert [b.type for b in message.content] == ["thinking", "text"]
    tokens = await client.messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}],
        thinking={"type": "enabled", "budget_tokens": 50000})
    assert tokens.input_tokens > 0


READ_A = ('<invoke name="Read"><parameter name="file_path"><![CDATA[/tmp/a.txt]]>'
          "</parameter></invoke>")
QUOTED_EXAMPLE = "".join(f"> {line}\n" for line in ["```xml", f"<tool_calls>{READ_A}</tool_calls>",
                                                     "```"])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("answer, calls, text", [
    (f"Looking.\n<tool_calls>\n<!-- read it -->\n{READ_A}\n</tool_calls>", 1, "Looking."),
    (f"Looking.\n<tool_calls><tool_calls>{READ_A}</tool_calls></tool_calls>", 1, "Looking."),
    (f"Like this:\n{QUOTED_EXAMPLE}Not run.", 0, f"Like this:\n{QUOTED_EXAMPLE}Not run."),
], ids=["comment after the wrapper", "doubled wrapper", "quoted fenced example"])
async def test_wrapper_remarks_repeats_and_quoted_examples(proxy, stream, answer, calls, text):
    """A comment after the wrapper and a doubled wrapper were shown as text
    beside the call; a quoted fenced example ran as a real call."""
    proxy.fake.enqueue(Scripted(answer=answer, chunk_size=1))
    message = await ask(proxy, "async", stream, tools=TOOLS)
    uses = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert uses == [("Read", {"file_path": "/tmp/a.txt"})] * calls
    assert message.stop_reason == ("tool_use" if calls else "end_turn")
    assert texts(message).strip() == text.strip()
