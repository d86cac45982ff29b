"""Usage through the official clients is the DeepSeek V4 token count of what
the client received (reasoning and answer) and of the prompt sent upstream;
max_tokens cuts on the token that reaches the limit, never earlier; and
count_tokens of a recorded agent request equals the prompt of its real turn."""

from __future__ import annotations

import base64
import json
import threading

import anthropic
import openai
import pytest
from google.genai import types
from provider_util import PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401
from test_claude_sse import claude_code_request, read_frames
from test_claude_sse import post as post_claude
from test_gemini_client import collect, generate
from test_gemini_wire import agent_request, send_as_recorded, sse_frames
from test_gemini_wire import post as post_gemini
from dsml_util import dsml
from token_util import binary_file_tokens, reference_tokens

from ds2proxy.testing import Replay, Scripted, load_expected
from ds2proxy.token_stream import LONG_RUN, RUN_KEEP, StreamCount
from ds2proxy.testing.provider_replies import ProviderReply
from ds2proxy.testing.clients import anthropic_client, gemini_client, openai_client
from ds2proxy.turn_text import NOMINAL_FILE_ID

RECORDINGS = ["markdown-format-example-20260405-spacefix", "longtext-deepseek-v4-flash-20260429",
              "guangzhou-weather-reasoner-search-20260404",
              "continue-thinking-snapshot-replay-20260405"]
SHORT_RECORDINGS = RECORDINGS[:3]
CORPUS = [
    ("Plain English answer with a list:\n\n1. first item\n2. second item\n", ""),
    ("中文回答：北京是中国的首都，上海是最大的城市。", "用户问的是中国的城市。"),
    ("```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n", "Write code."),
    ("Emoji time 🎉🚀👩‍👩‍👧‍👦 and café naïve Ελληνικά", "Some 😀 thinking"),
]
ANSWER_27 = ("Paris is the capital of France. It sits on the Seine and is known for the "
             "Louvre, the Eiffel Tower and cafes.")
ANSWER_200 = " ".join(["alpha", "beta", "gamma", "delta", "epsilon"] * 40)
USER = [{"role": "user", "content": "hello"}]


def sent_prompt_tokens(proxy) -> int:
    return reference_tokens(proxy.fake.calls_to("chat/completion")[-1].body["prompt"])


async def openai_chat(proxy, stream: bool, **kwargs) -> tuple[str, str, str, object]:
    """(reasoning, answer, finish reason, usage) as the client received them."""
    kwargs.setdefault("model", "deepseek-reasoner")
    kwargs.setdefault("messages", USER)
    client = openai_client(proxy)
    if not stream:
        resp = await client.chat.completions.create(**kwargs)
        message = resp.choices[0].message
        reasoning = (message.model_extra or {}).get("reasoning_content") or ""
        return reasoning, message.content or "", resp.choices[0].finish_reason, resp.usage
    chunks = [c async for c in await client.chat.completions.create(
        stream=True, stream_options={"include_usage": True}, **kwargs)]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    return reasoning, "".join(d.content or "" for d in deltas), finish, chunks[-1].usage


async def claude_message(proxy, stream: bool, **kwargs) -> anthropic.types.Message:
    kwargs.setdefault("model", "claude-sonnet-4-6")
    kwargs.setdefault("messages", USER)
    kwargs.setdefault("max_tokens", 4096)
    client = anthropic_client(proxy, "/anthropic", timeout=60.0)
    if not stream:
        return await client.messages.create(**kwargs)
    async with client.messages.stream(**kwargs) as events:
        return await events.get_final_message()


def claude_texts(message: anthropic.types.Message) -> tuple[str, str]:
    thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
    return thinking, "".join(b.text for b in message.content if b.type == "text")


# -- recordings and corpus ----------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", RECORDINGS)
async def test_openai_usage_counts_the_recordings_exactly(proxy, fixtures_dir, name, stream):
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    reasoning, answer, _, usage = await openai_chat(proxy, stream)
    expected = load_expected(fixtures_dir / "deepseek-sse" / name)
    assert (reasoning, answer) == (expected["thinking"], expected["content"])
    assert usage.completion_tokens_details.reasoning_tokens == reference_tokens(reasoning)
    assert usage.completion_tokens == reference_tokens(reasoning) + reference_tokens(answer)
    assert usage.prompt_tokens == sent_prompt_tokens(proxy)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", SHORT_RECORDINGS)
async def test_anthropic_usage_counts_the_recordings_exactly(proxy, fixtures_dir, name, stream):
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    message = await claude_message(proxy, stream, model="claude-opus-4-6",
                                   thinking={"type": "enabled", "budget_tokens": 2048})
    thinking, text = claude_texts(message)
    assert thinking == load_expected(fixtures_dir / "deepseek-sse" / name)["thinking"]
    assert message.usage.output_tokens == reference_tokens(thinking) + reference_tokens(text)
    assert message.usage.input_tokens == sent_prompt_tokens(proxy)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", SHORT_RECORDINGS)
async def test_gemini_usage_counts_the_recordings_exactly(proxy, fixtures_dir, name, stream):
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(
        include_thoughts=True))
    responses = await generate(proxy, "async", stream, model="gemini-2.5-pro",
                               contents="hello", config=config)
    thoughts, text, _, _ = collect(responses)
    assert thoughts == load_expected(fixtures_dir / "deepseek-sse" / name)["thinking"]
    usage = responses[-1].usage_metadata
    assert usage.thoughts_token_count == reference_tokens(thoughts)
    assert usage.candidates_token_count == reference_tokens(text)
    assert usage.prompt_token_count == sent_prompt_tokens(proxy)
    assert usage.total_token_count == (usage.prompt_token_count + usage.thoughts_token_count
                                       + usage.candidates_token_count)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("answer,thinking", CORPUS)
async def test_mixed_corpus_usage_is_exact_for_every_client(proxy, answer, thinking, stream):
    proxy.fake.enqueue(Scripted(answer=answer, thinking=thinking, chunk_size=2))
    reasoning, text, _, usage = await openai_chat(proxy, stream)
    assert (reasoning, text) == (thinking, answer)
    assert usage.completion_tokens == reference_tokens(thinking) + reference_tokens(answer)
    assert usage.completion_tokens_details.reasoning_tokens == reference_tokens(thinking)

    proxy.fake.enqueue(Scripted(answer=answer, thinking=thinking, chunk_size=3))
    message = await claude_message(proxy, stream, model="claude-opus-4-6",
                                   thinking={"type": "enabled", "budget_tokens": 2048})
    assert claude_texts(message) == (thinking, answer)
    assert message.usage.output_tokens == reference_tokens(thinking) + reference_tokens(answer)

    proxy.fake.enqueue(Scripted(answer=answer, chunk_size=5))
    responses = await generate(proxy, "async", stream, model="gemini-2.5-flash", contents="hi")
    assert collect(responses)[1] == answer
    assert responses[-1].usage_metadata.candidates_token_count == reference_tokens(answer)


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_sent_with_thinking_off_is_counted_not_shown(proxy, fixtures_dir, stream):
    """The upstream may think though thinking was off: the client never sees
    that reasoning, but the model generated it, so usage counts it as the
    reasoning tokens an official API reports for reasoning it hides; the
    client's max_tokens still bounds only what it is shown."""
    name = "markdown-format-example-20260405-spacefix"
    expected = load_expected(fixtures_dir / "deepseek-sse" / name)
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    reasoning, text, finish, usage = await openai_chat(proxy, stream, model="deepseek-chat")
    assert (reasoning, text, finish) == ("", expected["content"], "stop")
    hidden = reference_tokens(expected["thinking"])
    assert usage.completion_tokens_details.reasoning_tokens == hidden
    assert usage.completion_tokens == hidden + reference_tokens(expected["content"])

    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    _, text, finish, usage = await openai_chat(proxy, stream, model="deepseek-chat",
                                               max_tokens=20)
    assert finish == "length" and reference_tokens(text) == 20
    assert usage.completion_tokens == 20 + hidden


async def test_a_huge_word_is_never_counted_whole_on_the_event_loop(proxy, monkeypatch):
    """One long word has no safe boundary: its count waited for the end and
    took seconds on the event loop, stalling every other request. It is now
    closed at soft boundaries as it streams, and what is left at the end is
    counted in a thread when long: no count on the loop encodes more than a
    bounded stretch, and the figure is the whole word's."""
    on_loop: list[int] = []
    real_total = StreamCount.total

    def total(self: StreamCount) -> int:
        if threading.current_thread() is threading.main_thread():
            on_loop.append(self.uncounted_chars)
        return real_total(self)

    monkeypatch.setattr(StreamCount, "total", total)
    word = "x" * 200_000
    for stream in (False, True):
        proxy.fake.enqueue(Scripted(answer=word, chunk_size=1000))
        _, text, _, usage = await openai_chat(proxy, stream, model="deepseek-chat")
        assert text == word and usage.completion_tokens == reference_tokens(word)
    assert max(on_loop, default=0) <= LONG_RUN + RUN_KEEP + 1000
    # Under max_tokens each count near the cap encoded the whole run again
    # (a line of '=' near 4096 tokens: 34 s of loop time).
    on_loop.clear()
    line = "=" * 100_000
    cap = reference_tokens(line) - 20
    for stream in (False, True):
        proxy.fake.enqueue(Scripted(answer=line, chunk_size=5))
        _, text, finish, usage = await openai_chat(proxy, stream, model="deepseek-chat",
                                                   max_tokens=cap)
        assert finish == "length" and line.startswith(text)
        assert usage.completion_tokens == reference_tokens(text) == cap
    assert max(on_loop, default=0) <= LONG_RUN + RUN_KEEP + 1000


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_call_counts_the_text_the_model_wrote(proxy, stream):
    written = ("Let me check.\n\n<|DSML|tool_calls>\n  <|DSML|invoke name=\"get_weather\">\n"
               "    <|DSML|parameter name=\"city\"><![CDATA[Paris]]></|DSML|parameter>\n"
               "  </|DSML|invoke>\n</|DSML|tool_calls>")
    proxy.fake.enqueue(Scripted(answer=written, chunk_size=4))
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}]
    _, _, finish, usage = await openai_chat(proxy, stream, model="deepseek-chat", tools=tools)
    assert finish == "tool_calls"
    assert usage.completion_tokens == reference_tokens(written)


async def test_other_dialects_report_the_same_counts(proxy):
    proxy.fake.enqueue(Scripted(thinking="Let me see: 你好 🎉", answer="Hi there, friend!"))
    client = openai_client(proxy, "/lm/v2")
    resp = await client.chat.completions.create(model="deepseek-reasoner", messages=USER)
    assert resp.usage.completion_tokens == (reference_tokens("Let me see: 你好 🎉")
                                            + reference_tokens("Hi there, friend!"))
    assert resp.usage.prompt_tokens == sent_prompt_tokens(proxy)
    proxy.fake.enqueue(Scripted(answer="I am DeepSeek, 很高兴见到你。"))
    client = openai_client(proxy, "/api/v1")
    resp = await client.chat.completions.create(model="auto", messages=USER)
    assert resp.usage.completion_tokens == reference_tokens("I am DeepSeek, 很高兴见到你。")
    assert resp.usage.prompt_tokens == sent_prompt_tokens(proxy)


async def responses_call(proxy, stream: bool, **kwargs):
    """The final response object, streamed (from response.completed /
    response.incomplete) or not."""
    client = openai_client(proxy)
    if not stream:
        return await client.responses.create(**kwargs)
    events = [event async for event in await client.responses.create(stream=True, **kwargs)]
    assert events[-1].type in ("response.completed", "response.incomplete")
    return events[-1].response


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_usage_is_exact(proxy, stream):
    proxy.fake.enqueue(Scripted(thinking="Short thought.", answer="Ответ: 42 🎯"))
    resp = await responses_call(proxy, stream, model="deepseek-reasoner", input="q")
    assert resp.output_text == "Ответ: 42 🎯"
    assert resp.usage.output_tokens == (reference_tokens("Short thought.")
                                        + reference_tokens("Ответ: 42 🎯"))
    assert resp.usage.output_tokens_details.reasoning_tokens == reference_tokens("Short thought.")
    assert resp.usage.input_tokens == sent_prompt_tokens(proxy)


# -- max_tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_claude_max_tokens_50_keeps_a_27_token_answer_whole(proxy, stream):
    assert reference_tokens(ANSWER_27) == 27
    proxy.fake.enqueue(Scripted(answer=ANSWER_27, chunk_size=2))
    message = await claude_message(proxy, stream, max_tokens=50)
    assert message.stop_reason == "end_turn"
    assert claude_texts(message)[1] == ANSWER_27 and message.usage.output_tokens == 27


@pytest.mark.parametrize("stream", [False, True])
async def test_claude_max_tokens_50_stops_a_200_token_answer_at_exactly_50(proxy, stream):
    assert reference_tokens(ANSWER_200) == 200
    proxy.fake.enqueue(Scripted(answer=ANSWER_200, chunk_size=3))
    message = await claude_message(proxy, stream, max_tokens=50)
    text = claude_texts(message)[1]
    assert message.stop_reason == "max_tokens"
    assert ANSWER_200.startswith(text) and reference_tokens(text) == 50
    assert message.usage.output_tokens == 50


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_and_gemini_limits_stop_at_exactly_the_limit(proxy, stream):
    proxy.fake.enqueue(Scripted(answer=ANSWER_200, chunk_size=4))
    _, text, finish, usage = await openai_chat(proxy, stream, model="deepseek-chat",
                                               max_tokens=50)
    assert finish == "length" and reference_tokens(text) == usage.completion_tokens == 50

    proxy.fake.enqueue(Scripted(thinking="Counting words now.", answer=ANSWER_200))
    _, text, finish, usage = await openai_chat(proxy, stream, max_completion_tokens=30)
    thought = reference_tokens("Counting words now.")
    assert finish == "length" and reference_tokens(text) == 30 - thought
    assert usage.completion_tokens == 30

    proxy.fake.enqueue(Scripted(answer=ANSWER_200, chunk_size=5))
    config = types.GenerateContentConfig(max_output_tokens=50)
    responses = await generate(proxy, "async", stream, model="gemini-2.5-flash",
                               contents="hi", config=config)
    _, text, _, finishes = collect(responses)
    assert finishes[-1] == types.FinishReason.MAX_TOKENS and reference_tokens(text) == 50
    assert responses[-1].usage_metadata.candidates_token_count == 50


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_max_output_tokens_stops_at_exactly_the_limit(proxy, stream):
    proxy.fake.enqueue(Scripted(answer=ANSWER_200))
    resp = await responses_call(proxy, stream, model="deepseek-chat", input="q",
                                max_output_tokens=50)
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert reference_tokens(resp.output_text) == resp.usage.output_tokens == 50


FORCED_CALL = "Let me look that up for you.\n\n" + dsml(("get_weather", {"city": "Paris"}))
OPENAI_TOOL = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_forced_call_cut_by_the_limit_is_a_cut_answer_not_a_violation(proxy, stream):
    """tool_choice required / any, and max_tokens ends the answer before the
    call: a 422 tool_choice_violation blamed the model for the client's limit."""
    proxy.fake.enqueue(Scripted(answer=FORCED_CALL))
    _, text, finish, usage = await openai_chat(
        proxy, stream, model="deepseek-chat", max_tokens=5, tools=[OPENAI_TOOL],
        tool_choice="required")
    assert (finish, usage.completion_tokens) == ("length", 5)
    assert reference_tokens(text) == 5

    proxy.fake.enqueue(Scripted(answer=FORCED_CALL))
    message = await claude_message(proxy, stream, max_tokens=5, tools=[WEATHER_TOOL],
                                   tool_choice={"type": "any"})
    assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 5)

    proxy.fake.enqueue(Scripted(answer=FORCED_CALL))
    resp = await responses_call(proxy, stream, model="deepseek-chat", input="q",
                                max_output_tokens=5, tool_choice="required",
                                tools=[{"type": "function", **OPENAI_TOOL["function"]}])
    assert (resp.status, resp.incomplete_details.reason) == ("incomplete", "max_output_tokens")

    # Without a limit the same turn still calls, and no call at all is still a violation.
    proxy.fake.enqueue(Scripted(answer="No tool today."))
    with pytest.raises(openai.APIError, match="tool_choice requires"):
        await openai_chat(proxy, stream, model="deepseek-chat", max_tokens=50,
                          tools=[OPENAI_TOOL], tool_choice="required")


# -- count_tokens of recorded agent requests -------------------------------------------


@pytest.mark.parametrize("name", ["claude-code-2.1.330-first-turn.json",
                                  "claude-code-2.1.330-tool-result-turn.json"])
async def test_claude_code_count_tokens_equals_the_real_turn(proxy, fixtures_dir, name):
    path, body, headers = claude_code_request(fixtures_dir, name, proxy)
    answer = await post_claude(proxy, "/v1/messages/count_tokens?beta=true", {
        k: body[k] for k in ("model", "system", "messages", "tools", "thinking") if k in body},
        headers)
    assert answer.status == 200
    counted = answer.json()["input_tokens"]
    proxy.fake.enqueue(Scripted(answer="Done."))
    answer = await post_claude(proxy, path, dict(body, stream=True), headers)
    assert answer.status == 200
    start = read_frames(answer.body)[0][1]
    assert counted == start["message"]["usage"]["input_tokens"] == sent_prompt_tokens(proxy)


@pytest.mark.parametrize("name", ["gemini-cli-0.61-first-turn.json",
                                  "gemini-cli-0.61-tool-result-turn.json"])
async def test_gemini_cli_count_tokens_equals_the_real_turn(proxy, fixtures_dir, name):
    recorded = agent_request(fixtures_dir, name)
    model = recorded["path"].split("/models/")[1].split(":")[0]
    answer = await post_gemini(proxy, f"/v1beta/models/{model}:countTokens",
                               {"generateContentRequest": recorded["body"]})
    assert answer.status == 200
    counted = answer.json()["totalTokens"]
    proxy.fake.enqueue(Scripted(answer="Hi! How can I help?"))
    answer = await send_as_recorded(proxy, recorded)
    assert answer.status == 200
    last = json.loads(sse_frames(answer.body)[-1])
    assert counted == last["usageMetadata"]["promptTokenCount"] == sent_prompt_tokens(proxy)


async def test_sdk_count_tokens_match_the_turns_they_predict(proxy):
    messages = [{"role": "user", "content": "Summarise: 北京 is big. ```x = 1```"}]
    counted = await anthropic_client(proxy, "/anthropic", timeout=60.0).messages.count_tokens(
        model="claude-sonnet-4-6", messages=messages, system="Be brief.")
    proxy.fake.enqueue(Scripted(answer="OK."))
    message = await claude_message(proxy, False, messages=messages, system="Be brief.")
    assert counted.input_tokens == message.usage.input_tokens == sent_prompt_tokens(proxy)

    genai = gemini_client(proxy)
    counted = await genai.aio.models.count_tokens(model="gemini-2.5-flash", contents="Hi 🎉")
    proxy.fake.enqueue(Scripted(answer="Hello."))
    [resp] = await generate(proxy, "async", False, model="gemini-2.5-flash", contents="Hi 🎉")
    assert counted.total_tokens == resp.usage_metadata.prompt_token_count
    assert counted.total_tokens == sent_prompt_tokens(proxy)


async def test_responses_input_tokens_count_the_turn_they_predict(proxy):
    """The official client's responses.input_tokens.count (it used to be a
    405): stored history, instructions and tools counted as the turn counts."""
    client = openai_client(proxy)
    tool = {"type": "function", "name": "get_weather", "description": "Weather of a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    proxy.fake.enqueue(Scripted(answer="Hello! 你好"))
    first = await client.responses.create(model="gpt-4o", input="Hi there 🎉")
    follow_up = dict(model="gpt-4o", input="And Paris?", instructions="Be brief.",
                     tools=[tool], previous_response_id=first.id)
    counted = await client.responses.input_tokens.count(**follow_up)
    assert counted.object == "response.input_tokens"
    proxy.fake.enqueue(Scripted(answer="Sunny."))
    resp = await client.responses.create(**follow_up)
    assert counted.input_tokens == resp.usage.input_tokens == sent_prompt_tokens(proxy)
    # ``model`` may be left out: the server's default model counts it.
    bare = await client.responses.input_tokens.count(input="Hi there 🎉")
    assert bare.input_tokens == first.usage.input_tokens
    with pytest.raises(openai.BadRequestError):
        await client.responses.input_tokens.count(input="hi", previous_response_id="resp_none")


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PNG_B64 = base64.b64encode(PNG).decode()
WEATHER_TOOL = {"name": "get_weather", "description": "Weather of a city.", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}}}


def uploaded_ids(proxy) -> list[str]:
    return proxy.fake.calls_to("chat/completion")[-1].body["ref_file_ids"]


async def test_count_tokens_with_uploads_equal_the_turns_usage(proxy):
    """An uploaded file is named in the prompt by an id that exists only after
    the upload: turn and count_tokens both count the nominal id, so they agree."""
    messages = [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_B64}},
            {"type": "text", "text": "What is the weather where this was taken?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
            {"type": "text", "text": "sunny, 20 °C"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(PNG[::-1]).decode()}}]}]}]
    claude = anthropic_client(proxy, "/anthropic", timeout=60.0)
    counted = await claude.messages.count_tokens(model="claude-sonnet-4-6", messages=messages,
                                                 system="Be brief.", tools=[WEATHER_TOOL])
    proxy.fake.enqueue(Scripted(answer="Sunny."))
    message = await claude_message(proxy, False, messages=messages, system="Be brief.",
                                   tools=[WEATHER_TOOL])
    assert message.usage.input_tokens == counted.input_tokens
    ids = uploaded_ids(proxy)
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert len(ids) == 2 and all(i in prompt for i in ids)
    for file_id in ids:
        prompt = prompt.replace(file_id, NOMINAL_FILE_ID)
    assert counted.input_tokens == reference_tokens(prompt) + 2 * binary_file_tokens(len(PNG))

    contents = [types.Content(role="user", parts=[
        types.Part.from_bytes(data=PNG, mime_type="image/png"), types.Part(text="What is it?")])]
    genai = gemini_client(proxy)
    counted = await genai.aio.models.count_tokens(model="gemini-2.5-flash", contents=contents)
    proxy.fake.enqueue(Scripted(answer="A test pattern."))
    [resp] = await generate(proxy, "async", False, model="gemini-2.5-flash", contents=contents)
    assert resp.usage_metadata.prompt_token_count == counted.total_tokens


@pytest.mark.parametrize("stream", [False, True])
async def test_claude_usage_after_a_retry_counts_both_prompts(proxy, stream):
    """message_start announces the first prompt; an empty answer asked again
    adds the second, and the stream's final usage says so like the whole reply."""
    proxy.fake.enqueue(Scripted(answer=""), Scripted(answer="Second try."))
    message = await claude_message(proxy, stream)
    prompts = [c.body["prompt"] for c in proxy.fake.calls_to("chat/completion")]
    assert len(prompts) == 2 and claude_texts(message)[1] == "Second try."
    assert message.usage.input_tokens == sum(reference_tokens(p) for p in prompts)
    assert message.usage.output_tokens == reference_tokens("Second try.")


@pytest.mark.parametrize("stream", [False, True])
async def test_claude_usage_of_a_provider_answer_is_the_providers(proxy_factory, fake_provider,
                                                                  stream):
    proxy = await proxy_factory(provider_config(fake_provider))
    fake_provider.enqueue(ProviderReply(text="Hello there, friend.", usage=(21, 8)))
    message = await claude_message(proxy, stream, model=PROVIDER_MODEL)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (21, 8)


CACHED = {"prompt_tokens_details": {"cached_tokens": 16}}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_providers_cached_prompt_tokens_reach_every_family(proxy_factory, fake_provider,
                                                                 stream):
    """A provider's cache hits (OpenAI's prompt_tokens_details, DeepSeek's
    prompt_cache_hit_tokens) were reported as 0 cached tokens, or not at all."""
    proxy = await proxy_factory(provider_config(fake_provider))
    fake_provider.enqueue(ProviderReply(text="Hello there.", usage=(40, 8), usage_extra=CACHED))
    *_, usage = await openai_chat(proxy, stream, model=PROVIDER_MODEL)
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (40, 16)

    fake_provider.enqueue(ProviderReply(text="Hello there.", usage=(40, 8),
                                        usage_extra={"prompt_cache_hit_tokens": 16}))
    resp = await responses_call(proxy, stream, model=PROVIDER_MODEL, input="q")
    assert (resp.usage.input_tokens, resp.usage.input_tokens_details.cached_tokens) == (40, 16)

    # Anthropic's input_tokens leave the cache reads out.
    fake_provider.enqueue(ProviderReply(text="Hello there.", usage=(40, 8), usage_extra=CACHED))
    message = await claude_message(proxy, stream, model=PROVIDER_MODEL)
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.cache_creation_input_tokens) == (24, 16, 0)

    fake_provider.enqueue(ProviderReply(text="Hello there.", usage=(40, 8), usage_extra=CACHED))
    [*_, last] = await generate(proxy, "async", stream, model=PROVIDER_MODEL, contents="q")
    meta = last.usage_metadata
    assert (meta.prompt_token_count, meta.cached_content_token_count) == (40, 16)


async def test_a_cached_count_beyond_the_prompt_is_no_cache_hit(proxy_factory, fake_provider):
    proxy = await proxy_factory(provider_config(fake_provider))
    fake_provider.enqueue(ProviderReply(text="Hi.", usage=(10, 2),
                                        usage_extra={"prompt_tokens_details": {
                                            "cached_tokens": 11}}))
    message = await claude_message(proxy, False, model=PROVIDER_MODEL)
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (10, None)


def provider_sse(*deltas: dict) -> bytes:
    """A provider's stream of ``deltas`` with no usage at all."""
    chunks = [{"choices": [{"index": 0, "delta": d}]} for d in deltas]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + \
        b"data: [DONE]\n\n"


REASONING = "Weigh Oslo against Rome, then answer."
ANSWER = "Rome is warmer today."


@pytest.mark.parametrize("reasoning", ["field", "think_tags"])
async def test_our_count_of_a_provider_answer_names_its_reasoning(proxy_factory, fake_provider,
                                                                 reasoning):
    """A provider that reports no usage: its reasoning was counted into the
    answer's tokens (joined to it) and reasoning_tokens said 0."""
    proxy = await proxy_factory(provider_config(fake_provider, reasoning=reasoning))
    if reasoning == "field":
        body = provider_sse({"reasoning_content": REASONING}, {"content": ANSWER})
        written = reference_tokens(REASONING) + reference_tokens(ANSWER)
    else:
        content = f"<think>{REASONING}</think>{ANSWER}"
        body = provider_sse({"content": content[:9]}, {"content": content[9:]})
        written = reference_tokens(content)
    fake_provider.enqueue(ProviderReply(raw=body))
    thought, answer, _, usage = await openai_chat(proxy, False, model=PROVIDER_MODEL)
    assert (thought, answer) == (REASONING, ANSWER)
    assert usage.completion_tokens == written
    assert usage.completion_tokens_details.reasoning_tokens == reference_tokens(REASONING)


@pytest.mark.parametrize("native_tools", [True, False])
async def test_count_tokens_of_a_provider_model_predict_its_turn(proxy_factory, fake_provider,
                                                                native_tools):
    """count_tokens of a model a provider answers counted the web chat's
    prompt (its template, the tool prompt of a native-tools provider), not
    what the provider turn sends and counts."""
    proxy = await proxy_factory(provider_config(fake_provider, tools=native_tools))
    request = dict(model=PROVIDER_MODEL, system="Be brief.", tools=[WEATHER_TOOL],
                   messages=[{"role": "user", "content": "Weather in Paris? 北京呢?"}])
    claude = anthropic_client(proxy, "/anthropic", timeout=60.0)
    counted = await claude.messages.count_tokens(**request)
    fake_provider.enqueue(ProviderReply(raw=provider_sse({"content": "Sunny."})))
    message = await claude_message(proxy, False, **request)
    assert message.usage.input_tokens == counted.input_tokens
    pool = await claude.messages.count_tokens(**dict(request, model="claude-sonnet-4-6"))
    assert (pool.input_tokens != counted.input_tokens) is native_tools
