"""Tool calling through Responses, and Codex's real requests sent as they are.

The fake upstream scripts the model's DSML call blocks; the official client
must see ``function_call`` / ``custom_tool_call`` items carrying the
arguments exactly, never the markup.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest

from openai.types.responses import Response

from ds2proxy.testing import Scripted
from ds2proxy.testing.clients import openai_client
from dsml_util import dsml

CODEX_FILES = ["codex-0.169-first-turn.json", "codex-0.169-tool-result-turn.json"]
READ_TOOL = {"type": "function", "name": "read_file", "description": "Read a file",
             "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                            "required": ["path"]}}
PATCH_TOOL = {"type": "custom", "name": "apply_patch", "description": "Edit files",
              "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
PATCH = ("*** Begin Patch\n*** Add File: hello.txt\n+Hello <world> & \"friends\"\n"
         "*** End Patch")
MARKUP = ("DSML", "tool_calls", "invoke", "parameter", "CDATA")


@pytest.fixture
async def api(proxy) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(proxy) as client:
        yield client


def assert_no_markup(text: str) -> None:
    assert not any(word in text for word in MARKUP), text


def codex_request(fixtures_dir, name: str) -> dict:
    return json.loads((fixtures_dir / "agent-requests" / name).read_text())


def codex_body(fixtures_dir, name: str) -> dict:
    return codex_request(fixtures_dir, name)["body"]


def codex_headers(fixtures_dir, name: str) -> dict:
    """The recorded headers, with our key instead of the redacted one."""
    skip = {"authorization", "host", "content-length"}
    return {k: v for k, v in codex_request(fixtures_dir, name)["headers"].items()
            if k.lower() not in skip}


async def sse_payloads(proxy, body: dict, headers: dict | None = None) -> list:
    """Every ``data:`` payload of a streamed answer, ``[DONE]`` included."""
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/responses", json=body,
                             headers=proxy.headers(**(headers or {}))) as resp:
            assert resp.status == 200, await resp.text()
            text = await resp.text()
    datas = [line.removeprefix("data: ") for line in text.split("\n")
             if line.startswith("data: ")]
    return [d if d == "[DONE]" else json.loads(d) for d in datas]


def assert_items_closed_before_completed(payloads: list) -> dict:
    """Codex's needs: added before deltas, done for every item, completed last."""
    assert payloads[-1] == "[DONE]" and payloads[-2]["type"] == "response.completed"
    added, done = set(), set()
    for p in payloads[:-2]:
        index = p.get("output_index")
        if p["type"] == "response.output_item.added":
            added.add(index)
        elif p["type"] == "response.output_item.done":
            done.add(index)
        elif index is not None:
            assert index in added and index not in done, p["type"]
    final = payloads[-2]["response"]
    assert added == done == set(range(len(final["output"])))
    return final


# -- the tool loop -------------------------------------------------------------


@pytest.mark.parametrize("continue_by", ["previous_response_id", "full_input"])
async def test_two_step_tool_loop(proxy, api, continue_by):
    proxy.fake.enqueue(Scripted(answer="Let me look.\n\n" + dsml(("read_file",
                                                                  {"path": "README.md"}))),
                       Scripted(answer="The README says hello."))
    first = await api.responses.create(model="deepseek-chat", input="What is in README?",
                                       tools=[READ_TOOL])
    assert [item.type for item in first.output] == ["message", "function_call"]
    call = first.output[1]
    assert call.name == "read_file" and json.loads(call.arguments) == {"path": "README.md"}
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    assert first.output_text.strip() == "Let me look."
    assert_no_markup(first.output_text)

    result = {"type": "function_call_output", "call_id": call.call_id, "output": "hello"}
    if continue_by == "previous_response_id":
        follow = dict(input=[result], previous_response_id=first.id)
    else:
        history = [{"role": "user", "content": "What is in README?"},
                   *[item.model_dump(exclude_none=True) for item in first.output]]
        follow = dict(input=[*history, result], store=False)
    second = await api.responses.create(model="deepseek-chat", tools=[READ_TOOL], **follow)
    assert second.output_text == "The README says hello."
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert prompt.index("What is in README?") < prompt.index("README.md") \
        < prompt.index("hello")


async def test_parallel_calls_stream_as_separate_items(proxy, api):
    block = dsml(("read_file", {"path": "a.txt"}), ("read_file", {"path": "b.txt"}))
    proxy.fake.enqueue(Scripted(answer=block, chunk_size=7))
    async with api.responses.stream(model="deepseek-chat", input="read both",
                                              tools=[READ_TOOL]) as s:
        text = "".join([e.delta async for e in s if e.type == "response.output_text.delta"])
        final = await s.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [json.loads(c.arguments) for c in calls] == [{"path": "a.txt"}, {"path": "b.txt"}]
    assert len({c.call_id for c in calls}) == 2 and len({c.id for c in calls}) == 2
    assert_no_markup(text)
    assert text == ""


async def test_required_tool_choice_without_a_call_is_422(proxy, api):
    proxy.fake.enqueue(Scripted(answer="I would rather not."))
    with pytest.raises(openai.UnprocessableEntityError) as err:
        await api.responses.create(model="deepseek-chat", input="x",
                                             tools=[READ_TOOL], tool_choice="required")
    assert err.value.code == "tool_choice_violation"


async def test_required_tool_choice_without_a_call_fails_the_stream(proxy, api):
    proxy.fake.enqueue(Scripted(answer="I would rather not."))
    stream = await api.responses.create(
        model="deepseek-chat", input="x", tools=[READ_TOOL], tool_choice="required",
        stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.failed"
    assert "response.completed" not in kinds
    failed = events[-1]
    assert failed.response.status == "failed"
    assert failed.response.error.code == "tool_choice_violation"
    assert failed.model_extra["status_code"] == 422


# -- Codex ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CODEX_FILES)
async def test_codex_request_as_sent_streams_every_item_closed(proxy, fixtures_dir, name):
    proxy.fake.enqueue(Scripted(thinking="The user greets.", answer="Hi! How can I help?"))
    payloads = await sse_payloads(proxy, codex_body(fixtures_dir, name),
                                  codex_headers(fixtures_dir, name))
    final = assert_items_closed_before_completed(payloads)
    assert final["output_text"] == "Hi! How can I help?"
    assert final["model"] == "gpt-5-codex"


async def test_codex_tool_result_turn_reaches_the_prompt(proxy, fixtures_dir):
    body = codex_body(fixtures_dir, "codex-0.169-tool-result-turn.json")
    proxy.fake.enqueue(Scripted(answer="Created the marker."))
    await sse_payloads(proxy, body)
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "touch /home/user/project/m1" in prompt
    assert "Process exited with code 0" in prompt


async def test_codex_exec_command_call_is_rendered_exactly(proxy, fixtures_dir):
    cmd = "grep -rn 'a && b' src/ | head -n 5 > \"out.txt\""
    proxy.fake.enqueue(Scripted(answer=dsml(("exec_command", {"cmd": cmd, "workdir": "/tmp"})),
                                chunk_size=5))
    final = assert_items_closed_before_completed(
        await sse_payloads(proxy, codex_body(fixtures_dir, "codex-0.169-first-turn.json")))
    (call,) = [item for item in final["output"] if item["type"] == "function_call"]
    assert json.loads(call["arguments"]) == {"cmd": cmd, "workdir": "/tmp"}
    assert call["status"] == "completed" and call["name"] == "exec_command"


@pytest.mark.parametrize("stream", [True, False])
async def test_codex_apply_patch_custom_call_is_rendered_exactly(proxy, api, fixtures_dir, stream):
    body = copy.deepcopy(codex_body(fixtures_dir, "codex-0.169-first-turn.json"))
    body["tools"].append(PATCH_TOOL)
    body["stream"] = stream
    proxy.fake.enqueue(Scripted(answer=dsml(("apply_patch", {"input": PATCH})), chunk_size=6))
    if stream:
        payloads = await sse_payloads(proxy, body)
        final = assert_items_closed_before_completed(payloads)
        deltas = [p["delta"] for p in payloads[:-1]
                  if p["type"] == "response.custom_tool_call_input.delta"]
        assert "".join(deltas) == PATCH
        done = next(p for p in payloads[:-1]
                    if p["type"] == "response.custom_tool_call_input.done")
        assert done["input"] == PATCH
    else:
        response = await api.post("/responses", body=body, cast_to=Response)
        final = response.model_dump()
    (call,) = [item for item in final["output"] if item["type"] == "custom_tool_call"]
    assert call["input"] == PATCH and call["name"] == "apply_patch"
    assert call["call_id"].startswith("call_") and call["status"] == "completed"
    # The model was shown the grammar its patch must follow.
    prompt = proxy.fake.calls_to("chat/completion")[0].body["prompt"]
    assert "The input must match this lark grammar:\nstart: /.+/" in prompt


def with_additional_tools(body: dict) -> dict:
    """The request as Codex sends it for its own model names: no ``tools``, an
    ``additional_tools`` item holding namespaces (a freeform ``exec`` among them)."""
    body = copy.deepcopy(body)
    functions = body.pop("tools")
    exec_tool = {"type": "custom", "name": "exec", "description": "Run JavaScript.",
                 "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    body["model"] = "gpt-6.1-sol"
    body["input"].insert(0, {"type": "additional_tools", "role": "developer", "tools": [
        {"type": "namespace", "name": "code", "tools": [exec_tool]},
        {"type": "namespace", "name": "shell",
         "tools": [t for t in functions if t["type"] == "function"]}]})
    return body


@pytest.mark.parametrize("stream", [True, False])
async def test_codex_additional_tools_item_declares_the_tools(proxy, api, fixtures_dir, stream):
    body = with_additional_tools(codex_body(fixtures_dir, "codex-0.169-first-turn.json"))
    body["stream"] = stream
    script = "console.log(1 < 2 && 'a')"
    proxy.fake.enqueue(Scripted(answer=dsml(("exec", {"input": script})), chunk_size=6))
    if stream:
        final = assert_items_closed_before_completed(await sse_payloads(proxy, body))
    else:
        final = (await api.post("/responses", body=body, cast_to=Response)).model_dump()
    (call,) = [item for item in final["output"] if item["type"] == "custom_tool_call"]
    assert (call["name"], call["input"], call["namespace"]) == ("exec", script, "code")
    prompt = proxy.fake.calls_to("chat/completion")[0].body["prompt"]
    assert "Tool: exec" in prompt and "Tool: exec_command" in prompt
    assert "additional_tools" not in prompt


async def test_resent_additional_tools_item_declares_each_tool_once(proxy, fixtures_dir):
    body = with_additional_tools(codex_body(fixtures_dir, "codex-0.169-first-turn.json"))
    body["input"].append(copy.deepcopy(body["input"][0]))
    proxy.fake.enqueue(Scripted(answer="Nothing to run."))
    final = assert_items_closed_before_completed(await sse_payloads(proxy, body))
    assert final["output"][0]["content"][0]["text"] == "Nothing to run."
    prompt = proxy.fake.calls_to("chat/completion")[0].body["prompt"]
    assert prompt.count("Tool: exec\n") == 1


async def test_custom_call_comes_back_as_history(proxy, api):
    proxy.fake.enqueue(Scripted(answer="Patched."))
    history = [{"role": "user", "content": "add hello.txt"},
               {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_p",
                "name": "apply_patch", "input": PATCH},
               {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"}]
    resp = await api.responses.create(model="deepseek-chat", input=history,
                                                tools=[PATCH_TOOL])
    assert resp.output_text == "Patched."
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "*** Add File: hello.txt" in prompt and "Done!" in prompt


def namespace(name: str, *tools: str) -> dict:
    return {"type": "namespace", "name": name, "description": f"the {name} server",
            "tools": [{"type": "function", "name": tool, "description": f"{name}'s {tool}",
                       "parameters": {"type": "object", "properties": {
                           "q": {"type": "string"}}}} for tool in tools]}


SERVERS = [namespace("mcp__github", "search", "open_issue"), namespace("mcp__jira", "search")]


@pytest.mark.parametrize("stream", [False, True])
async def test_namespaced_tools_of_one_name_stay_apart(proxy, api, stream):
    """Two namespaces' ``search`` reach the model under their namespace's
    name and a call comes back to the right one: both were offered as
    ``search`` and every call went to the last namespace."""
    proxy.fake.enqueue(Scripted(answer=dsml(("mcp__github.search", {"q": "bug"}),
                                            ("open_issue", {"q": "bug"}))))
    if stream:
        async with api.responses.stream(model="gpt-5-codex", input="find it",
                                        tools=SERVERS) as events:
            response = await events.get_final_response()
    else:
        response = await api.responses.create(model="gpt-5-codex", input="find it",
                                              tools=SERVERS)
    assert [(c.name, c.namespace) for c in response.output] == [
        ("search", "mcp__github"), ("open_issue", "mcp__github")]
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "Tool: mcp__github.search\n" in prompt and "Tool: mcp__jira.search\n" in prompt
    assert "Tool: open_issue\n" in prompt

    call = response.output[0]
    proxy.fake.enqueue(Scripted(answer="Found one."))
    history = [{"role": "user", "content": "find it"}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "#12"}]
    again = await api.responses.create(model="gpt-5-codex", input=history, tools=SERVERS,
                                       store=False)
    assert again.output_text == "Found one."
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert '<|DSML|invoke name="mcp__github.search">' in prompt


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_choice_names_a_shared_namespaced_tool_by_its_own_name(proxy, api, stream):
    """``{"type": "function", "name": "search"}`` with two namespaces' ``search``
    was a 400 'not declared': the official tool_choice has no namespace field,
    so the own name means either of them, and the call must be one of them."""
    proxy.fake.enqueue(Scripted(answer=dsml(("mcp__jira.search", {"q": "bug"}))))
    kwargs = {"model": "gpt-5-codex", "input": "find it", "tools": SERVERS,
              "tool_choice": {"type": "function", "name": "search"}}
    if stream:
        async with api.responses.stream(**kwargs) as events:
            response = await events.get_final_response()
    else:
        response = await api.responses.create(**kwargs)
    assert [(c.name, c.namespace) for c in response.output] == [("search", "mcp__jira")]
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "Tool: mcp__github.search\n" in prompt and "Tool: mcp__jira.search\n" in prompt
    assert "Tool: open_issue\n" not in prompt and "MUST call" in prompt


async def test_tool_choice_of_a_namespaced_tool_needs_a_call(proxy, api):
    proxy.fake.enqueue(Scripted(answer="No call."))
    with pytest.raises(openai.UnprocessableEntityError):
        await api.responses.create(model="gpt-5-codex", input="find it", tools=SERVERS,
                                   tool_choice={"type": "function", "name": "search"})
