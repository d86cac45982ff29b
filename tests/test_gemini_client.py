"""The official google-genai client against a live ds2proxy on the fake upstream.

Recordings of the real upstream come back byte for byte as thought and text
parts, stream and non-stream, sync and async; a two-step tool loop runs with
parallel calls; the model list, model lookup and token counting answer in
the shapes the client parses.
"""

from __future__ import annotations

import asyncio

import pytest
from google import genai
from google.genai import errors, types

from ds2proxy.canonical import ToolCall
from ds2proxy.prompt.dsml import render_tool_calls
from ds2proxy.testing import Delivery, Replay, Scripted, load_expected
from ds2proxy.testing.clients import gemini_client, request

RECORDINGS = [
    "markdown-format-example-20260405-spacefix",
    "longtext-deepseek-v4-flash-20260429",
    "continue-thinking-snapshot-replay-20260405",
    "guangzhou-weather-reasoner-search-20260404",
]
THINKING_MODEL = "gemini-2.5-pro"
FAST_MODEL = "gemini-2.5-flash"
MARKUP = ("DSML", "tool_calls>", "<invoke", "<parameter", "]]>")


def collect(responses) -> tuple[str, str, list[types.FunctionCall], list]:
    """Thoughts, text, calls and finish reasons across responses or stream chunks."""
    thoughts, text, calls, finishes = [], [], [], []
    for response in responses:
        cand = response.candidates[0]
        for part in (cand.content.parts if cand.content and cand.content.parts else []):
            if part.function_call:
                calls.append(part.function_call)
            elif part.thought:
                thoughts.append(part.text)
            elif part.text:
                text.append(part.text)
        finishes.append(cand.finish_reason)
    return "".join(thoughts), "".join(text), calls, finishes


async def generate(proxy, mode: str, stream: bool, **kwargs) -> list:
    """One call in the given mode: the responses (one, or the chunks) in order."""
    genai_client = gemini_client(proxy)  # held: a dropped client closes its connection pool
    if mode == "async":
        models = genai_client.aio.models
        if stream:
            return [c async for c in await models.generate_content_stream(**kwargs)]
        return [await models.generate_content(**kwargs)]
    sync = genai_client.models
    if stream:
        return await asyncio.to_thread(lambda: list(sync.generate_content_stream(**kwargs)))
    return [await asyncio.to_thread(sync.generate_content, **kwargs)]


# Thought parts come only when asked for, as Gemini CLI does.
SHOW_THOUGHTS = types.GenerateContentConfig(
    thinking_config=types.ThinkingConfig(include_thoughts=True))

# The 50 000-character reasoning of this recording streams as ~33 000 chunks,
# which the SDK validates one by one for half a minute; its stream is checked
# on the wire instead (test_long_recording_streams_exactly_on_the_wire).
LONG_RECORDING = "continue-thinking-snapshot-replay-20260405"
CASES = [pytest.param(name, mode, stream, id=f"{name}-{mode}-{'stream' if stream else 'whole'}")
         for name in RECORDINGS for mode in ("sync", "async") for stream in (False, True)
         if not (stream and name == LONG_RECORDING)]


@pytest.mark.parametrize("name, mode, stream", CASES)
async def test_recording_reconstructs_exactly(proxy, fixtures_dir, name, mode, stream):
    want = load_expected(fixtures_dir / "deepseek-sse" / name)
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    responses = await generate(proxy, mode, stream, model=THINKING_MODEL, contents="hello",
                               config=SHOW_THOUGHTS)
    thoughts, text, calls, finishes = collect(responses)
    assert thoughts == want["thinking"]
    assert text == want["content"]
    assert calls == []
    assert finishes[-1] == types.FinishReason.STOP
    assert all(f is None for f in finishes[:-1])
    usage = responses[-1].usage_metadata
    assert usage.thoughts_token_count > 0 and usage.candidates_token_count > 0
    assert usage.total_token_count == (usage.prompt_token_count + usage.candidates_token_count
                                       + usage.thoughts_token_count)
    assert {r.model_version for r in responses} == {THINKING_MODEL}
    assert len(proxy.fake.calls_to("chat/continue")) == want["rounds"] - 1
    assert proxy.core.pool.inflight == 0


async def test_system_instruction_and_config_reach_the_upstream(proxy):
    proxy.fake.enqueue(Scripted(thinking="unseen", answer="Bonjour."))
    config = types.GenerateContentConfig(
        system_instruction="Answer in French.", temperature=0.3, top_p=0.8,
        max_output_tokens=300, stop_sequences=["END"],
        thinking_config=types.ThinkingConfig(thinking_budget=0),
        safety_settings=[types.SafetySetting(category="HARM_CATEGORY_HARASSMENT",
                                             threshold="BLOCK_NONE")])
    response = await gemini_client(proxy).aio.models.generate_content(
        model=THINKING_MODEL, contents="Say hello.", config=config)
    assert response.text == "Bonjour."
    assert collect([response])[0] == ""
    sent = proxy.fake.calls_to("chat/completion")[-1].body
    assert "Answer in French." in sent["prompt"] and "Say hello." in sent["prompt"]
    assert sent["thinking_enabled"] is False
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["stop"]) == (
        0.3, 0.8, 300, ["END"])


WEATHER_TOOLS = [types.Tool(function_declarations=[
    types.FunctionDeclaration(
        name="get_weather", description="Current weather of a city",
        parameters=types.Schema(type="OBJECT", properties={
            "city": types.Schema(type="STRING"), "days": types.Schema(type="INTEGER")},
            required=["city"])),
    types.FunctionDeclaration(
        name="get_time", description="Local time of a city",
        parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}}),
])]
CALLS = [ToolCall("a", "get_weather", {"city": "Paris", "days": 2}),
         ToolCall("b", "get_time", {"city": "London"})]


def results_content(calls: list[types.FunctionCall]) -> types.Content:
    outputs = {"get_weather": {"output": "sunny, 21C"}, "get_time": {"output": "14:05"}}
    return types.Content(role="user", parts=[
        types.Part.from_function_response(name=c.name, response=outputs[c.name])
        for c in calls])


def assert_no_markup(*texts: str) -> None:
    for text in texts:
        assert not any(mark in text for mark in MARKUP), text




@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_two_step_tool_loop_with_parallel_calls(proxy, stream):
    proxy.fake.enqueue(Scripted(answer="Checking both.\n\n" + render_tool_calls(CALLS)),
                       Scripted(answer="Paris is sunny; it is 14:05 in London."))
    question = types.Content(role="user",
                             parts=[types.Part(text="Weather in Paris? Time in London?")])
    config = types.GenerateContentConfig(tools=WEATHER_TOOLS)
    mode = "async" if stream else "sync"
    first = await generate(proxy, mode, stream, model=FAST_MODEL, contents=[question],
                           config=config)
    _, text, calls, finishes = collect(first)
    assert [(c.name, c.args) for c in calls] == [(c.name, c.arguments) for c in CALLS]
    assert text.strip() == "Checking both."
    assert finishes[-1] == types.FinishReason.STOP
    model_turn = types.Content(role="model", parts=[
        part for r in first for part in (r.candidates[0].content.parts or [])])
    second = await generate(proxy, mode, stream, model=FAST_MODEL, config=config,
                            contents=[question, model_turn, results_content(calls)])
    _, answer, more_calls, finishes = collect(second)
    assert answer == "Paris is sunny; it is 14:05 in London."
    assert more_calls == [] and finishes[-1] == types.FinishReason.STOP
    assert_no_markup(text, answer)
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "sunny, 21C" in prompt and "14:05" in prompt
    assert "[tool_result name=get_weather id=call_gemini_1]" in prompt
    assert "[tool_result name=get_time id=call_gemini_2]" in prompt
    assert 'invoke name="get_weather"' in prompt  # the earlier calls, as history
    assert proxy.core.pool.inflight == 0


async def test_v1_prefix_serves_the_same_api(proxy):
    proxy.fake.enqueue(Scripted(answer="via v1"))
    response = await gemini_client(proxy, api_version="v1").aio.models.generate_content(
        model=FAST_MODEL, contents="hi")
    assert response.text == "via v1"
    assert proxy.fake.calls_to("chat/completion")


async def test_comment_free_keep_alives_keep_the_python_client_reading(proxy_factory):
    proxy = await proxy_factory({"runtime": {"keepalive_seconds": 0.05}})
    proxy.fake.enqueue(Scripted(answer="late but whole", delivery=Delivery(silence=0.4)))
    chunks = [c async for c in await gemini_client(proxy).aio.models.generate_content_stream(
        model=FAST_MODEL, contents="hi")]
    _, text, _, finishes = collect(chunks)
    assert text == "late but whole"
    assert finishes[-1] == types.FinishReason.STOP


async def test_failure_after_the_first_byte_raises_in_the_client(proxy):
    proxy.fake.enqueue(Scripted(answer="partial answer that never ends", chunk_size=2,
                                delivery=Delivery(drop_after=8)))
    seen = []
    with pytest.raises(errors.ServerError) as info:
        async for chunk in await gemini_client(proxy).aio.models.generate_content_stream(
                model=FAST_MODEL, contents="hi"):
            seen.append(chunk)
    assert info.value.code == 502
    assert seen and all(c.candidates[0].finish_reason is None for c in seen)
    assert proxy.core.pool.inflight == 0


async def test_content_filter_is_safety(proxy):
    proxy.fake.enqueue(Scripted(answer="Some text.", content_filter=True),
                       Scripted(answer="Other text.", content_filter=True))
    sdk = gemini_client(proxy)
    response = await sdk.aio.models.generate_content(model=FAST_MODEL, contents="x")
    assert response.text == "Some text."
    assert response.candidates[0].finish_reason == types.FinishReason.SAFETY
    chunks = [c async for c in await gemini_client(proxy).aio.models.generate_content_stream(
        model=FAST_MODEL, contents="x")]
    _, text, _, finishes = collect(chunks)
    assert text == "Other text." and finishes[-1] == types.FinishReason.SAFETY


async def test_content_filter_without_text_is_invalid_argument(proxy):
    proxy.fake.enqueue(Scripted(answer="", content_filter=True))
    with pytest.raises(errors.ClientError) as info:
        await gemini_client(proxy).aio.models.generate_content(model=FAST_MODEL, contents="x")
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")


async def test_output_limit_finishes_with_max_tokens(proxy):
    proxy.fake.enqueue(Scripted(answer="word " * 200, chunk_size=5))
    response = await gemini_client(proxy).aio.models.generate_content(
        model=FAST_MODEL, contents="x",
        config=types.GenerateContentConfig(max_output_tokens=5))
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert 0 < len(response.text) < len("word " * 200)


@pytest.mark.parametrize("api_version", ["v1beta", "v1", "v1alpha"])
async def test_model_list_and_lookup(proxy, api_version):
    # On v1 the path is shared with the OpenAI plugin; Google clients get Google's shape.
    gclient = gemini_client(proxy, api_version)
    listed = [m async for m in await gclient.aio.models.list(config={"page_size": 7})]
    names = [m.name for m in listed]
    assert "models/deepseek-chat" in names and "models/gemini-2.5-pro" in names
    assert len(names) == len(set(names)) > 7  # several pages were followed
    assert all("generateContent" in m.supported_actions for m in listed)
    assert all(m.input_token_limit and m.output_token_limit for m in listed)
    model = await gclient.aio.models.get(model="gemini-3.1-pro-preview")
    assert model.name == "models/gemini-3.1-pro-preview"
    assert "deepseek-reasoner" in model.display_name
    with pytest.raises(errors.ClientError) as info:
        await gclient.aio.models.get(model="totally-custom")
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")


async def test_the_v1alpha_api_version_is_served(proxy):
    """google-genai with ``api_version="v1alpha"`` (how early thinking
    examples set it up) got a 404 "no route" for every call."""
    proxy.fake.enqueue(Scripted(answer="alpha"))
    client = gemini_client(proxy, "v1alpha")
    response = await client.aio.models.generate_content(model=FAST_MODEL, contents="hi")
    counted = await client.aio.models.count_tokens(model=FAST_MODEL, contents="hi")
    assert response.text == "alpha" and counted.total_tokens > 0


async def test_a_page_size_of_zero_is_the_default_page(proxy):
    """In Protocol Buffers' JSON 0 is an unset number: pageSize=0 gave
    pages of one model instead of the default 50."""
    zero = await request("GET", proxy.url + "/v1beta/models?pageSize=0")
    unset = await request("GET", proxy.url + "/v1beta/models")
    assert zero.status == 200 and zero.json() == unset.json()
    assert len(zero.json()["models"]) > 1


async def test_count_tokens_matches_the_prompt_count_of_a_call(proxy):
    contents = "How many tokens is this sentence, roughly?"
    sdk = gemini_client(proxy)
    counted = await sdk.aio.models.count_tokens(model=FAST_MODEL, contents=contents)
    proxy.fake.enqueue(Scripted(answer="About ten."))
    response = await gemini_client(proxy).aio.models.generate_content(model=FAST_MODEL,
                                                                      contents=contents)
    assert counted.total_tokens == response.usage_metadata.prompt_token_count > 0


async def test_quickstart_stream_loop_never_prints_none(proxy):
    """Google's quickstart: ``for chunk in …stream(…): print(chunk.text)``.
    The finish and usage ride on the last text chunk, so no chunk's text is
    None (hidden thoughts make no chunks at all)."""
    answer = "Hello there, how are you today?"
    proxy.fake.enqueue(Scripted(thinking="Some hidden thought.", answer=answer, chunk_size=5))
    genai_client = gemini_client(proxy)  # held: a dropped client closes its connection pool
    chunks = await asyncio.to_thread(lambda: list(genai_client.models.generate_content_stream(
        model=THINKING_MODEL, contents="Say hello.")))
    texts = [chunk.text for chunk in chunks]
    assert None not in texts and "".join(texts) == answer
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_thought_parts_only_with_include_thoughts(proxy, stream):
    proxy.fake.enqueue(Scripted(thinking="Private reasoning.", answer="Done."),
                       Scripted(thinking="Private reasoning.", answer="Done."))
    hidden = await generate(proxy, "async", stream, model=THINKING_MODEL, contents="hi")
    shown = await generate(proxy, "async", stream, model=THINKING_MODEL, contents="hi",
                           config=SHOW_THOUGHTS)
    assert collect(hidden)[:2] == ("", "Done.")
    assert collect(shown)[:2] == ("Private reasoning.", "Done.")
    # Hidden, the reasoning is still counted as Gemini counts it.
    assert hidden[-1].usage_metadata.thoughts_token_count > 0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("request_fields, field", [
    ({"contents": [types.Content(role="wizard", parts=[types.Part(text="hi")])]},
     "contents[0].role"),
    ({"contents": "hi", "config": types.GenerateContentConfig(tools=[types.Tool(
        function_declarations=[types.FunctionDeclaration(description="nameless")])])},
     "tools[0].functionDeclarations[0].name"),
    ({"contents": "hi", "config": types.GenerateContentConfig(tools=[
        types.Tool(function_declarations=[types.FunctionDeclaration(name="get_time")]),
        types.Tool(function_declarations=[types.FunctionDeclaration(name="get_time")])])},
     "Duplicate function declaration found: get_time"),
])
async def test_unknown_roles_and_nameless_functions_are_invalid_argument(
        proxy, request_fields, field, stream):
    """These used to be guessed at (a user turn, a dropped tool, the first of
    two declarations of one name) and the turn run; Gemini refuses them."""
    with pytest.raises(errors.ClientError) as info:
        await generate(proxy, "async", stream, model=FAST_MODEL, **request_fields)
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert field in info.value.message
    assert proxy.fake.calls == [] and proxy.core.pool.inflight == 0


@pytest.mark.parametrize("config, field", [
    ({"response_logprobs": True}, "responseLogprobs"),
    ({"response_logprobs": True, "logprobs": 3}, "responseLogprobs"),
    ({"logprobs": 2}, "logprobs"),
])
async def test_asking_for_logprobs_is_invalid_argument(proxy, config, field):
    """``responseLogprobs`` was accepted and the answer carried no
    ``logprobsResult``: the caller could not tell it was not served."""
    client = gemini_client(proxy)
    with pytest.raises(errors.ClientError) as info:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash", contents="hi",
            config=types.GenerateContentConfig(**config))
    assert info.value.code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert f"generationConfig.{field}" in info.value.message and proxy.fake.calls == []


async def test_a_thinking_budget_and_level_together_are_invalid_argument(proxy):
    """Gemini takes one or the other (400); both were accepted, the budget won."""
    with pytest.raises(errors.ClientError) as info:
        await gemini_client(proxy).aio.models.generate_content(
            model="gemini-2.5-flash", contents="hi",
            config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(
                thinking_budget=1024, thinking_level="HIGH")))
    assert info.value.code == 400 and "thinkingConfig" in info.value.message
    assert proxy.fake.calls == []


INSTRUMENTS = ["Percussion", "String", "Woodwind", "Brass", "Keyboard"]


def enum_config(**extra) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        response_mime_type="text/x.enum",
        response_schema={"type": "STRING", "enum": INSTRUMENTS}, **extra)


@pytest.mark.parametrize("reply", ["Percussion", "  percussion.\n", "```\nPercussion\n```",
                                   "The oboe? That is a **Woodwind**, not Percussion? No: "
                                   "Percussion", "\"Percussion\""])
@pytest.mark.parametrize("stream", [False, True])
async def test_an_enum_answer_is_one_of_the_values(proxy, reply, stream):
    """text/x.enum was answered as free text ("The answer is Percussion.").
    The values are now asked for in the prompt and the reply read back to
    the one it names, spelt as listed, streamed or not."""
    if "Woodwind" in reply:
        proxy.fake.enqueue(Scripted(answer=reply), Scripted(answer="Percussion"))
    else:
        proxy.fake.enqueue(Scripted(answer=reply, chunk_size=3))
    client = gemini_client(proxy)
    ask = dict(model="gemini-2.5-flash", contents="What kind of instrument is a drum?",
               config=enum_config())
    if stream:
        text = "".join([c.text or "" async for c in
                        await client.aio.models.generate_content_stream(**ask)])
    else:
        text = (await client.aio.models.generate_content(**ask)).text
    assert text == "Percussion"
    calls = proxy.fake.calls_to("chat/completion")
    assert '"Woodwind"' in calls[0].body["prompt"] and "exactly one" in calls[0].body["prompt"]
    if "Woodwind" in reply:  # naming two values is asked again, in the same session
        assert "more than one" in calls[1].body["prompt"]
        assert calls[1].body["chat_session_id"] == calls[0].body["chat_session_id"]


async def test_an_enum_answer_that_stays_unusable_is_a_clear_error(proxy):
    proxy.fake.enqueue(Scripted(answer="A drum is a drum."), Scripted(answer="Still a drum."))
    with pytest.raises(errors.APIError) as info:
        await gemini_client(proxy).aio.models.generate_content(
            model="gemini-2.5-flash", contents="drum?", config=enum_config())
    assert info.value.code == 422 and "allowed values" in info.value.message
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("schema", [None, {"type": "STRING"}, {"type": "STRING", "enum": []}])
async def test_text_x_enum_without_enum_values_is_invalid_argument(proxy, schema):
    with pytest.raises(errors.ClientError) as info:
        await gemini_client(proxy).aio.models.generate_content(
            model="gemini-2.5-flash", contents="drum?", config=types.GenerateContentConfig(
                response_mime_type="text/x.enum", response_schema=schema))
    assert info.value.code == 400 and "responseSchema" in info.value.message
    assert proxy.fake.calls == []


async def test_asking_for_image_or_audio_output_is_invalid_argument(proxy):
    """responseModalities IMAGE was answered with a text part and a 200."""
    client = gemini_client(proxy)
    for modalities in (["TEXT", "IMAGE"], ["AUDIO"]):
        with pytest.raises(errors.ClientError) as info:
            await client.aio.models.generate_content(
                model="gemini-2.5-flash", contents="draw a cat",
                config=types.GenerateContentConfig(response_modalities=modalities))
        assert info.value.code == 400 and "responseModalities" in info.value.message
    assert proxy.fake.calls == []
    proxy.fake.enqueue(Scripted(answer="A cat."))
    answer = await client.aio.models.generate_content(
        model="gemini-2.5-flash", contents="describe a cat",
        config=types.GenerateContentConfig(response_modalities=["TEXT"]))
    assert answer.text == "A cat."


@pytest.mark.parametrize("mode", ["ANY", "AUTO"])
async def test_an_empty_allowed_function_list_is_an_unset_one(proxy, mode):
    """``allowedFunctionNames: []`` (how SDKs serialise an unset repeated
    field) was a 400; in Protocol Buffers' JSON it is no restriction at all."""
    proxy.fake.enqueue(Scripted(answer=render_tool_calls(CALLS[:1])))
    config = types.GenerateContentConfig(tools=WEATHER_TOOLS, tool_config=types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode=mode,
                                                            allowed_function_names=[])))
    _, _, calls, finishes = collect(await generate(proxy, "async", False, model=FAST_MODEL,
                                                   contents="Weather in Paris?", config=config))
    assert [(c.name, c.args) for c in calls] == [("get_weather", CALLS[0].arguments)]
    assert finishes[-1] == types.FinishReason.STOP
    body = proxy.fake.calls_to("chat/completion")[-1].body
    assert ("MUST call at least one tool" in body["prompt"]) == (mode == "ANY")
