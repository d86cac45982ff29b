"""Tool calling through Chat Completions with the official ``openai`` client:
the tool shapes, tool_choice forms and history entries the API accepts, and
the calls it answers with, stream and not."""

from __future__ import annotations

import json
from enum import Enum

import openai
import pytest
from pydantic import BaseModel

from dsml_util import dsml
from ds2proxy.testing import Scripted
from ds2proxy.testing.clients import openai_client

USER = [{"role": "user", "content": "run it"}]
# Chat Completions' freeform tool: name, description and grammar under "custom".
CODE_EXEC = {"type": "custom", "custom": {
    "name": "code_exec", "description": "Run Python code",
    "format": {"type": "grammar", "grammar": {"syntax": "regex", "definition": r"print\(.*\)"}}}}
SOURCE = 'print("a < b & {\\"c\\": 1}")'


def last_prompt(proxy) -> str:
    return proxy.fake.calls_to("chat/completion")[-1].body["prompt"]


async def custom_call(proxy, stream: bool, **kwargs):
    """The one call of a turn whose model wrote a code_exec call: (id, name, input)."""
    proxy.fake.enqueue(Scripted(answer=dsml(("code_exec", {"input": SOURCE}))))
    async with openai_client(proxy) as client:
        if not stream:
            answer = await client.chat.completions.create(
                model="deepseek-chat", messages=USER, tools=[CODE_EXEC], **kwargs)
            assert answer.choices[0].finish_reason == "tool_calls"
            [call] = answer.choices[0].message.tool_calls
            assert call.type == "custom"
            return call.id, call.custom.name, call.custom.input
        chunks = [chunk async for chunk in await client.chat.completions.create(
            model="deepseek-chat", messages=USER, tools=[CODE_EXEC], stream=True, **kwargs)]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    [entry] = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert entry.type == "custom" and entry.function is None
    return entry.id, entry.custom["name"], entry.custom["input"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("choice", [None, {"type": "custom", "custom": {"name": "code_exec"}},
                                    {"type": "allowed_tools", "allowed_tools": {
                                        "mode": "required",
                                        "tools": [{"type": "custom",
                                                   "custom": {"name": "code_exec"}}]}}])
async def test_a_custom_tool_is_declared_forced_and_called_with_its_raw_input(
        proxy, stream, choice):
    """A Chat ``custom`` tool keeps its name and grammar under ``custom``: it
    was skipped (the model never heard of it), forcing it was a 400, and a
    call came back as a function call."""
    kwargs = {"tool_choice": choice} if choice else {}
    call_id, name, text = await custom_call(proxy, stream, **kwargs)
    assert (name, text) == ("code_exec", SOURCE)
    assert call_id.startswith("call_")
    prompt = last_prompt(proxy)
    assert "Tool: code_exec" in prompt and r"print\(.*\)" in prompt


async def test_a_custom_call_comes_back_as_history(proxy):
    """The assistant message the client got back (``custom`` entry) is taken as
    history: the call is shown to the model with its input verbatim."""
    call_id, _, _ = await custom_call(proxy, False)
    proxy.fake.enqueue(Scripted(answer="printed"))
    async with openai_client(proxy) as client:
        answer = await client.chat.completions.create(
            model="deepseek-chat", tools=[CODE_EXEC], messages=[
                *USER,
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": call_id, "type": "custom",
                     "custom": {"name": "code_exec", "input": '{"a": 1}'}}]},
                {"role": "tool", "tool_call_id": call_id, "content": "a < b"}])
    assert answer.choices[0].message.content == "printed"
    prompt = last_prompt(proxy)
    assert ('<|DSML|invoke name="code_exec">\n'
            '    <|DSML|parameter name="input"><![CDATA[{"a": 1}]]></|DSML|parameter>') in prompt
    assert "a < b" in prompt


async def test_a_nameless_custom_tool_is_a_400_before_any_work(proxy):
    async with openai_client(proxy) as client:
        with pytest.raises(Exception) as caught:
            await client.chat.completions.create(
                model="deepseek-chat", messages=USER,
                tools=[{"type": "custom", "custom": {"description": "no name"}}])
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "tools[0].custom.name"
    assert proxy.fake.calls == []


class Level(str, Enum):
    LOW = "1"
    HIGH = "2"


class Note(BaseModel):
    """A tool whose schema pydantic writes: $defs, a $ref and a nullable union."""

    path: str
    text: str | None
    level: Level


async def test_a_pydantic_tool_parses_into_its_model(proxy):
    """The client validates the call against the model it declared: a
    number-looking ``str | None`` and a ``$ref``-ed string enum must arrive as
    strings (they came as 42 and 1, and the client's parse raised)."""
    proxy.fake.enqueue(Scripted(answer=dsml(("Note", {"path": "a.txt", "text": "42",
                                                      "level": "1"}))))
    async with openai_client(proxy) as client:
        answer = await client.chat.completions.parse(
            model="deepseek-chat", messages=USER, tools=[openai.pydantic_function_tool(Note)])
    [call] = answer.choices[0].message.tool_calls
    assert call.function.parsed_arguments == Note(path="a.txt", text="42", level=Level.LOW)


PROBE = {"type": "function", "function": {"name": "probe", "parameters": {
    "type": "object", "properties": {"x": {"type": "object"}}}}}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_nested_thousands_deep_is_answered(proxy, stream):
    """A parameter value nested 3000 deep crashed the turn with a
    RecursionError; it now comes back as the text the model wrote."""
    value = "<a>" * 1500 + '{"b":' * 1500 + "1" + "}" * 1500 + "</a>" * 1500
    proxy.fake.enqueue(Scripted(answer=dsml(("probe", {"x": value})), chunk_size=400))
    async with openai_client(proxy) as client:
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                model="deepseek-chat", messages=USER, tools=[PROBE], stream=True)]
            [call] = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
            finish = chunks[-1].choices[0].finish_reason
        else:
            answer = await client.chat.completions.create(
                model="deepseek-chat", messages=USER, tools=[PROBE])
            [call] = answer.choices[0].message.tool_calls
            finish = answer.choices[0].finish_reason
    assert finish == "tool_calls"
    assert json.loads(call.function.arguments) == {"x": value}


CODE_ANSWER = ('Strip the tags:\n```python\nreply = reply.split("</think>")[-1]\n'
               'assert "<think>" not in reply\n```\nThe `<think>` tag opens reasoning. Done.')


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools", [[], [PROBE]], ids=["no tools", "tools"])
async def test_think_tags_in_code_are_the_answer_not_a_leak(proxy, stream, tools):
    """Code showing ``<think>`` was cleaned as leaked reasoning: the tags went
    and the first unclosed one cut the rest of the answer."""
    proxy.fake.enqueue(Scripted(answer=CODE_ANSWER, chunk_size=4))
    extra = {"tools": tools} if tools else {}
    async with openai_client(proxy) as client:
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                model="deepseek-chat", messages=USER, stream=True, **extra)]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            answer = await client.chat.completions.create(
                model="deepseek-chat", messages=USER, **extra)
            text = answer.choices[0].message.content
    assert text == CODE_ANSWER


@pytest.mark.parametrize("stream", [False, True])
async def test_a_leak_after_a_closed_code_block_is_still_removed(proxy, stream):
    """Plain chunks skip the cleaner; it must still learn where lines end, or a
    block's closing fence reads as an opening span and the leak after it stays."""
    chunks = ["```python\nprint(", "1)\n", "```", "\nafter ", "<think>", "hidden"]
    proxy.fake.enqueue(Scripted(answer=chunks))
    async with openai_client(proxy) as client:
        if stream:
            parts = [c async for c in await client.chat.completions.create(
                model="deepseek-chat", messages=USER, stream=True)]
            text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
        else:
            answer = await client.chat.completions.create(model="deepseek-chat", messages=USER)
            text = answer.choices[0].message.content
    assert text == "```python\nprint(1)\n```\nafter "


FILES = [{"type": "function", "function": {"name": name, "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}}
    for name in ("read_file", "write_file")]


@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_inside_a_tool_block_ends_in_length_not_tool_calls(proxy, stream):
    """The client's max_tokens ended the answer inside its second call: the
    first went out, the cut one was dropped, and the turn said tool_calls,
    so an agent never learnt a call was lost. It now ends in length."""
    answer = dsml(("read_file", {"path": "a.txt"}),
                  ("write_file", {"path": "b.txt", "content": "lorem ipsum " * 2000}))
    proxy.fake.enqueue(Scripted(answer=answer, chunk_size=40))
    async with openai_client(proxy) as client:
        kwargs = dict(model="deepseek-chat", messages=USER, tools=FILES, max_tokens=300)
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                stream=True, **kwargs)]
            calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []
                     if tc.function and tc.function.name]
            finish = [c.choices[0].finish_reason for c in chunks
                      if c.choices and c.choices[0].finish_reason][-1]
        else:
            reply = await client.chat.completions.create(**kwargs)
            calls = reply.choices[0].message.tool_calls or []
            finish = reply.choices[0].finish_reason
    assert [c.function.name for c in calls] == ["read_file"]
    assert finish == "length"


@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_after_a_closed_tool_block_still_ends_in_tool_calls(proxy, stream):
    """Text after a closed block cut by max_tokens keeps tool_calls (spec:
    a call emitted ends the turn in tool_calls whatever text follows)."""
    answer = dsml(("read_file", {"path": "a.txt"})) + "\n" + "and then " * 2000
    proxy.fake.enqueue(Scripted(answer=answer, chunk_size=40))
    async with openai_client(proxy) as client:
        reply = await client.chat.completions.create(
            model="deepseek-chat", messages=USER, tools=FILES, max_tokens=300)
    assert [c.function.name for c in reply.choices[0].message.tool_calls] == ["read_file"]
    assert reply.choices[0].finish_reason == "tool_calls"
