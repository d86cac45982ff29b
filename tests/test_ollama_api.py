"""The Ollama API through the official ``ollama`` client, and its wire by raw
HTTP: NDJSON framing, the final object's counts and durations, errors as
``{"error": "..."}`` with Ollama's statuses, and the implied-key setting."""

from __future__ import annotations

import base64
import json
import threading

import aiohttp
import ollama
import pytest
from dsml_util import dsml

from ds2proxy.testing import Delivery, Scripted
from ds2proxy.testing.fake_provider import FakeProvider
from ds2proxy.testing.provider_replies import ProviderReply
from ds2proxy.testing.clients import ollama_client
from ds2proxy.testing.clients import Reply
from ds2proxy.testing.clients import post as raw_post
from provider_util import PROVIDER_KEY

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
WEATHER = {"type": "object", "properties": {"city": {"type": "string"},
                                            "temp_c": {"type": "integer"}},
           "required": ["city", "temp_c"]}
READ_TOOL = {"type": "function", "function": {
    "name": "read_file", "description": "Read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                   "required": ["path"]}}}
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def completion_bodies(proxy) -> list[dict]:
    return [call.body for call in proxy.fake.calls_to("chat/completion")]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# -- models -------------------------------------------------------------------------


async def test_list_show_ps_and_version(proxy):
    listed = await ollama_client(proxy).list()
    names = [m.model for m in listed.models]
    assert "deepseek-chat" in names and "deepseek-vision-chat" in names
    first = listed.models[0]
    assert first.digest and len(first.digest) == 64 and first.modified_at is not None
    assert first.details.family == "deepseek"
    chat = await ollama_client(proxy).show("deepseek-chat")
    assert chat.capabilities == ["completion", "tools", "thinking", "insert"]
    vision = await ollama_client(proxy).show("deepseek-vision-chat:latest")
    assert "vision" in vision.capabilities
    assert (await ollama_client(proxy).ps()).models == []
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/api/version") as resp:
            assert isinstance((await resp.json())["version"], str)


@pytest.mark.parametrize("path", ["/api/version", "/api/tags"])
async def test_head_on_version_and_tags(proxy, path):
    """Ollama answers HEAD on these (tools probe the server with it); it was a 405."""
    async with aiohttp.ClientSession() as http:
        async with http.head(proxy.url + path) as resp:
            assert resp.status == 200 and await resp.read() == b""
            assert resp.headers["Content-Type"].startswith("application/json")


async def test_show_reads_verbose_as_a_boolean(proxy):
    answer = await post(proxy, "/api/show", {"model": "deepseek-chat", "verbose": "yes"})
    assert answer.status == 400 and "verbose" in answer.json()["error"]
    answer = await post(proxy, "/api/show", {"model": "deepseek-chat", "verbose": True})
    assert answer.status == 200 and answer.json()["details"]["family"] == "deepseek"


async def test_show_unknown_model_is_404(proxy):
    with pytest.raises(ollama.ResponseError) as info:
        await ollama_client(proxy).show("llama3-not-here")
    assert info.value.status_code == 404 and "llama3-not-here" in info.value.error


# -- chat ---------------------------------------------------------------------------


async def test_chat_non_stream_counts_and_durations(proxy):
    proxy.fake.enqueue(Scripted(answer="Hello there."))
    resp = await ollama_client(proxy).chat(model="deepseek-chat", messages=user("hi"), stream=False,
                                           keep_alive="5m", options={"temperature": 0.3})
    assert resp.message.content == "Hello there." and resp.message.role == "assistant"
    assert resp.done and resp.done_reason == "stop"
    assert resp.prompt_eval_count > 0 and resp.eval_count > 0
    assert all(getattr(resp, name) >= 0 for name in DURATIONS)
    assert resp.total_duration >= resp.load_duration and resp.total_duration > 0
    assert completion_bodies(proxy)[0]["temperature"] == 0.3


async def test_chat_stream_in_pieces_then_a_final_object(proxy):
    proxy.fake.enqueue(Scripted(answer="One two three four.", chunk_size=4))
    parts = [p async for p in await ollama_client(proxy).chat(model="deepseek-chat:latest",
                                                              messages=user("count"), stream=True)]
    assert len(parts) > 2
    assert "".join(p.message.content for p in parts) == "One two three four."
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count > 0
    assert all(p.model == "deepseek-chat:latest" for p in parts)


# "max" is Ollama's fourth level; it was refused with a 400.
@pytest.mark.parametrize("think", [True, "high", "max"])
async def test_think_puts_reasoning_in_message_thinking(proxy, think):
    proxy.fake.enqueue(Scripted(thinking="Let me think.", answer="Done."))
    resp = await ollama_client(proxy).chat(model="deepseek-chat", messages=user("hi"), think=think)
    assert resp.message.thinking == "Let me think." and resp.message.content == "Done."
    assert completion_bodies(proxy)[0]["thinking_enabled"] is True


async def test_think_false_turns_a_reasoner_off(proxy):
    proxy.fake.enqueue(Scripted(answer="Quick."))
    sdk = ollama_client(proxy)
    resp = await sdk.chat(model="deepseek-r1:14b", messages=user("hi"), think=False)
    assert resp.message.content == "Quick." and not resp.message.thinking
    assert completion_bodies(proxy)[0]["thinking_enabled"] is False


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_call_round_trip(proxy, stream):
    proxy.fake.enqueue(Scripted(answer="Reading.\n\n" + dsml(("read_file", {"path": "a.txt"})),
                                chunk_size=9),
                       Scripted(answer="The file says hi."))
    messages = user("what is in a.txt?")
    first = await ollama_client(proxy).chat(model="deepseek-chat", messages=messages,
                                            tools=[READ_TOOL], stream=stream)
    if stream:
        first = [p async for p in first]
        calls = [c for p in first for c in (p.message.tool_calls or [])]
        assert first[-1].done_reason == "stop"
    else:
        calls = first.message.tool_calls
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("read_file", {"path": "a.txt"})]
    messages += [{"role": "assistant", "content": "",
                  "tool_calls": [c.model_dump(exclude_none=True) for c in calls]},
                 {"role": "tool", "tool_name": "read_file", "content": "hi from the file"}]
    second = await ollama_client(proxy).chat(model="deepseek-chat", messages=messages,
                                             tools=[READ_TOOL], stream=False)
    assert second.message.content == "The file says hi."
    prompt = completion_bodies(proxy)[1]["prompt"]
    assert "hi from the file" in prompt and "read_file" in prompt


async def test_structured_output_with_a_schema_and_json(proxy):
    proxy.fake.enqueue(Scripted(answer='```json\n{"city": "Paris", "temp_c": 18}\n```'),
                       Scripted(answer='Sure: {"ok": true}'))
    resp = await ollama_client(proxy).chat(model="deepseek-chat", messages=user("weather"),
                                           format=WEATHER)
    assert json.loads(resp.message.content) == {"city": "Paris", "temp_c": 18}
    assert "temp_c" in completion_bodies(proxy)[0]["prompt"]
    resp = await ollama_client(proxy).generate(model="deepseek-chat", prompt="ok?", format="json")
    assert json.loads(resp.response) == {"ok": True}


async def test_a_format_schema_that_doubles_at_every_level_does_not_stall_the_server(proxy):
    """Each of 40 levels names the next twice: checking the answer walked
    2**40 branches on the event loop, and the server answered nobody again."""
    defs = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(40)}
    defs["d40"] = {"type": "object", "properties": {"n": {"type": "integer"}}}
    proxy.fake.enqueue(Scripted(answer='{"n": "seven"}'))
    resp = await ollama_client(proxy).chat(model="deepseek-chat", messages=user("n?"),
                                           format={"$defs": defs, "$ref": "#/$defs/d0"})
    assert json.loads(resp.message.content) == {"n": "seven"}
    assert (await ollama_client(proxy).ps()).models == []


@pytest.mark.parametrize("route", ["chat", "generate"])
async def test_a_big_image_request_is_parsed_off_the_loop(proxy, monkeypatch, route):
    """Ollama bodies were parsed on the event loop: a 12 MB base64 image
    held every other request while it was decoded (~60 ms here)."""
    from ds2proxy_plugins.ollama import routes
    parse = f"parse_{route}"
    seen, original = [], getattr(routes, parse)
    monkeypatch.setattr(routes, parse, lambda *args: seen.append(threading.get_ident())
                        or original(*args))
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(200_000)).decode()
    client = ollama_client(proxy)
    if route == "chat":
        answer = (await client.chat(model="deepseek-chat", messages=[
            {"role": "user", "content": "what", "images": [image]}])).message.content
    else:
        answer = (await client.generate(model="deepseek-chat", prompt="what",
                                        images=[image])).response
    assert "attached as file-" in answer
    assert seen and threading.get_ident() not in seen
    with pytest.raises(ollama.ResponseError) as info:  # the model is still looked up
        await client.chat(model="no-such-model", messages=[
            {"role": "user", "content": "what", "images": [image]}])
    assert info.value.status_code == 404


async def test_num_predict_and_stop_options(proxy):
    proxy.fake.enqueue(Scripted(answer=["Alpha be", "ta ST", "OP gamma"]),
                       Scripted(answer="word " * 200, chunk_size=5))
    cut = await ollama_client(proxy).chat(model="deepseek-chat", messages=user("go"),
                                          options={"stop": ["STOP"]})
    assert cut.message.content == "Alpha beta " and cut.done_reason == "stop"
    short = await ollama_client(proxy).chat(model="deepseek-chat", messages=user("go"),
                                            options={"num_predict": 5})
    assert short.done_reason == "length" and len(short.message.content) < len("word " * 200)


async def test_images_are_uploaded(proxy):
    proxy.fake.enqueue(Scripted(answer="A picture."))
    messages = [{"role": "user", "content": "describe", "images": [PNG]}]
    resp = await ollama_client(proxy).chat(model="deepseek-vision-chat", messages=messages)
    assert resp.message.content == "A picture."
    [stored] = proxy.fake.files.values()
    assert stored.content == PNG and stored.content_type == "image/png"
    assert completion_bodies(proxy)[0]["ref_file_ids"] == [stored.id]


async def test_base64_wrapped_in_lines_is_an_image(proxy):
    """Ollama's base64 decoder skips line breaks, so an image encoded by a
    tool that wraps its output (``base64`` does, at 76 columns) works there;
    here it was a 400 "not valid base64"."""
    proxy.fake.enqueue(Scripted(answer="A picture."))
    wrapped = base64.encodebytes(PNG).decode().replace("\n", "\r\n")
    assert "\n" in wrapped.strip()
    answer = await post(proxy, "/api/generate", {"model": "deepseek-vision-chat", "prompt": "?",
                                                 "images": [wrapped], "stream": False})
    assert answer.status == 200 and answer.json()["response"] == "A picture."
    [stored] = proxy.fake.files.values()
    assert stored.content == PNG


async def test_images_a_tool_returned_are_uploaded(proxy):
    proxy.fake.enqueue(Scripted(answer="A chart."))
    messages = [*user("plot it"),
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "read_file", "arguments": {"path": "a.png"}}}]},
                {"role": "tool", "tool_name": "read_file", "content": "the plot",
                 "images": [PNG]}]
    await ollama_client(proxy).chat(model="deepseek-vision-chat", messages=messages,
                                    tools=[READ_TOOL])
    [stored] = proxy.fake.files.values()
    assert stored.content == PNG and stored.content_type == "image/png"
    body = completion_bodies(proxy)[0]
    assert body["ref_file_ids"] == [stored.id]
    assert f"the plot\n[image: image/png, attached as {stored.id}]" in body["prompt"]


# -- generate -----------------------------------------------------------------------


async def test_generate_whole_and_streamed(proxy):
    proxy.fake.enqueue(Scripted(thinking="hmm", answer="Blue."),
                       Scripted(answer="Sky is blue.", chunk_size=3))
    whole = await ollama_client(proxy).generate(model="deepseek-reasoner", prompt="Sky colour?",
                                                system="Be brief.")
    assert whole.response == "Blue." and whole.thinking == "hmm"
    assert whole.done_reason == "stop" and whole.eval_count > 0
    assert "Be brief." in completion_bodies(proxy)[0]["prompt"]
    parts = [p async for p in await ollama_client(proxy).generate(model="deepseek-chat",
                                                                  prompt="Sky?", stream=True)]
    assert "".join(p.response for p in parts) == "Sky is blue." and parts[-1].done


async def test_a_suffix_asks_for_the_middle(proxy):
    """Ollama fills in between ``prompt`` and ``suffix``; the suffix was
    dropped, so the model continued the prompt without knowing what follows."""
    proxy.fake.enqueue(Scripted(answer="    result = a + b"), Scripted(answer="raw"))
    resp = await ollama_client(proxy).generate(model="deepseek-chat",
                                               prompt="def add(a, b):\n",
                                               suffix="\n    return result")
    assert resp.response == "    result = a + b" and resp.done_reason == "stop"
    prompt = completion_bodies(proxy)[0]["prompt"]
    assert "<PREFIX>\ndef add(a, b):\n\n</PREFIX>" in prompt
    assert "<SUFFIX>\n\n    return result\n</SUFFIX>" in prompt
    # Editor plugins send the cursor's prefix and suffix with raw: true; a
    # chat model has no template to skip, so that is the same request.
    await ollama_client(proxy).generate(model="deepseek-chat", prompt="x = ", suffix="\nprint(x)",
                                        raw=True)
    assert "<SUFFIX>\n\nprint(x)\n</SUFFIX>" in completion_bodies(proxy)[1]["prompt"]


async def test_empty_prompt_only_loads_or_unloads(proxy):
    resp = await ollama_client(proxy).generate(model="deepseek-chat", prompt="")
    assert resp.done and resp.done_reason == "load" and resp.response == ""
    gone = await ollama_client(proxy).chat(model="deepseek-chat", messages=[], keep_alive=0)
    assert gone.done_reason == "unload" and gone.message.content == ""
    assert completion_bodies(proxy) == []


# -- embeddings ---------------------------------------------------------------------


async def test_embed_and_legacy_embeddings(proxy):
    sdk = ollama_client(proxy)
    resp = await sdk.embed(model="any-embedder", input=["one", "two"], dimensions=8)
    assert len(resp.embeddings) == 2 and len(resp.embeddings[0]) == 8
    assert resp.embeddings[0] != resp.embeddings[1] and resp.prompt_eval_count > 0
    legacy = await ollama_client(proxy).embeddings(model="any-embedder", prompt="one")
    assert len(legacy.embedding) == 1536
    # Older clients name the model "name".
    answer = await post(proxy, "/api/embed", {"name": "old-embedder", "input": "one"})
    assert answer.status == 200 and answer.json()["model"] == "old-embedder"


async def test_empty_embedding_input_only_loads(proxy):
    """Ollama answers no input (absent, "" or []) with no vectors: it only
    loads the model. Here [] and an absent input were a 400 and "" was embedded."""
    for body in ({}, {"input": ""}, {"input": []}):
        answer = await post(proxy, "/api/embed", {"model": "any-embedder", **body})
        assert answer.status == 200 and answer.json() == {"model": "any-embedder",
                                                          "embeddings": []}
    for body in ({}, {"prompt": ""}):
        answer = await post(proxy, "/api/embeddings", {"model": "any-embedder", **body})
        assert answer.status == 200 and answer.json() == {"embedding": []}
    assert (await ollama_client(proxy).embed(model="any-embedder", input=[])).embeddings == []
    # dimensions 0 is Ollama's "unset": the provider's full size.
    full = await post(proxy, "/api/embed", {"model": "e", "input": "one", "dimensions": 0})
    assert full.status == 200 and len(full.json()["embeddings"][0]) == 1536


@pytest.mark.parametrize("path, body, words", [
    # The legacy route embedded the first of a list and dropped the rest.
    ("/api/embeddings", {"prompt": ["one", "two"]}, "prompt must be a string"),
    ("/api/embeddings", {"prompt": ["one"]}, "prompt must be a string"),
    ("/api/embeddings", {"prompt": "one", "keep_alive": "soon"}, "keep_alive"),
    ("/api/embeddings", {"prompt": "one", "options": "bad"}, "options"),
    ("/api/embed", {"input": "one", "truncate": "no"}, "truncate"),
    ("/api/embed", {"input": "one", "keep_alive": []}, "keep_alive"),
    ("/api/embed", {"input": "one", "options": {"num_ctx": "big"}}, "options.num_ctx"),
    ("/api/embed", {"input": "one", "dimensions": -8}, "dimensions"),
    ("/api/embed", {"input": ["one", 2]}, "input must be a string or a list of strings"),
])
async def test_embedding_fields_of_the_wrong_type_are_400(proxy, path, body, words):
    answer = await post(proxy, path, {"model": "any-embedder", **body})
    assert answer.status == 400 and words in answer.json()["error"]


async def test_embed_without_a_provider_is_501(proxy_factory):
    proxy = await proxy_factory({"embeddings": {"provider": ""}})
    with pytest.raises(ollama.ResponseError) as info:
        await ollama_client(proxy).embed(model="x", input="one")
    assert info.value.status_code == 501 and "embeddings" in info.value.error


# -- the wire -----------------------------------------------------------------------


async def post(proxy, path: str, body: dict | str, headers: dict | None = None) -> Reply:
    return await raw_post(proxy.url + path, body, proxy.headers() if headers is None else headers)


async def test_stream_is_ndjson_by_default(proxy):
    proxy.fake.enqueue(Scripted(answer="abcdefgh", chunk_size=2))
    answer = await post(proxy, "/api/chat",
                        {"model": "deepseek-chat", "messages": user("hi")})
    assert answer.status == 200
    assert answer.headers.get("Content-Type", "").startswith("application/x-ndjson")
    assert answer.body.endswith(b"\n")
    lines = answer.body.decode().split("\n")[:-1]
    objects = [json.loads(line) for line in lines]
    assert "".join(o["message"]["content"] for o in objects) == "abcdefgh"
    assert [o["done"] for o in objects][-1] is True
    last = objects[-1]
    for field in ("done_reason", "prompt_eval_count", "eval_count", *DURATIONS):
        assert field in last
    assert last["created_at"].endswith("Z")


@pytest.mark.parametrize("path, body, status, words", [
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
    ("/api/chat", {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
     404, "no-such-model"),
    ("/api/chat", {"model": "deepseek-chat", "messages": "hi"}, 400, "messages"),
    ("/api/chat", {"model": "deepseek-chat", "think": "very",
                   "messages": [{"role": "user", "content": "x"}]}, 400, "think"),
    ("/api/chat", {"model": "deepseek-chat", "format": "xml",
                   "messages": [{"role": "user", "content": "x"}]}, 400, "format"),
    ("/api/chat", {"model": "deepseek-chat", "options": {"stop": [1]},
                   "messages": [{"role": "user", "content": "x"}]}, 400, "options.stop"),
    ("/api/generate", {"model": "deepseek-chat", "prompt": "x", "images": ["%%%"]}, 400,
     "base64"),
    ("/api/generate", {"model": "deepseek-chat", "prompt": "x",
                       "options": {"num_predict": "ten"}}, 400, "num_predict"),
    ("/api/chat", "{not json", 400, "JSON"),
    # Found by the route fuzz at FUZZ_SCALE=4: options travelled upstream unranged.
    ("/api/chat", {"model": "deepseek-chat", "options": {"temperature": 1e308},
                   "messages": [{"role": "user", "content": "x"}]}, 400, "options.temperature"),
    ("/api/generate", {"model": "deepseek-chat", "prompt": "x",
                       "options": {"top_p": -1}}, 400, "options.top_p"),
    ("/api/generate", {"model": "deepseek-chat", "prompt": "x",
                       "options": {"top_k": "many"}}, 400, "options.top_k"),
    ("/api/chat", {"model": "deepseek-chat", "options": {"frequency_penalty": 9},
                   "messages": [{"role": "user", "content": "x"}]}, 400,
     "options.frequency_penalty"),
])
async def test_errors_are_ollama_shaped_and_cost_nothing(proxy, path, body, status, words):
    answer = await post(proxy, path, body)
    assert answer.status == status
    assert answer.headers.get("Content-Type", "").startswith("application/json")
    error = answer.json()
    assert list(error) == ["error"] and words in error["error"]
    assert completion_bodies(proxy) == []


async def test_unknown_api_path_and_missing_key(proxy):
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/api/nothing-here") as resp:
            assert resp.status == 404 and "error" in await resp.json()
    answer = await post(proxy, "/api/chat", {"model": "deepseek-chat",
                                             "messages": user("hi")}, headers={})
    assert answer.status == 401 and list(answer.json()) == ["error"]


async def test_implied_key_serves_clients_without_one(proxy_factory):
    proxy = await proxy_factory({"plugins": {"ollama": {"implied_key": "test-key"}},
                                 "auth": {"allow_passthrough": False}})
    proxy.fake.enqueue(Scripted(answer="Keyless hello."))
    keyless = ollama_client(proxy, {})
    resp = await keyless.chat(model="deepseek-chat", messages=user("hi"))
    assert resp.message.content == "Keyless hello."
    # A wrong key that is sent is still checked.
    with pytest.raises(ollama.ResponseError) as info:
        await ollama_client(proxy, {"Authorization": "Bearer wrong"}).chat(model="deepseek-chat",
                                                                           messages=user("hi"))
    assert info.value.status_code == 401


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://evil.example"},
    {"Sec-Fetch-Site": "same-site"},
])
async def test_the_implied_key_is_not_lent_to_other_sites_pages(proxy_factory, headers):
    """API routes answer every origin, so a page anywhere could otherwise spend
    the accounts and read the answers without knowing any key."""
    proxy = await proxy_factory({"plugins": {"ollama": {"implied_key": "test-key"}},
                                 "auth": {"allow_passthrough": False}})
    body = {"model": "deepseek-chat", "stream": False, "messages": user("hi")}
    answer = await post(proxy, "/api/chat", body, headers=headers)
    assert answer.status == 401 and "must send an API key" in answer.json()["error"]
    assert completion_bodies(proxy) == []
    proxy.fake.enqueue(Scripted(answer="with the key"))
    answer = await post(proxy, "/api/chat", body,
                        headers={**headers, **proxy.headers()})
    assert answer.status == 200 and answer.json()["message"]["content"] == "with the key"


async def test_degpt_api_v1_routes_are_untouched(proxy):
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/api/v1/models") as resp:
            body = await resp.json()
    assert resp.status == 200 and body["object"] == "list"


async def test_failure_after_output_is_an_error_line(proxy):
    proxy.fake.enqueue(Scripted(answer="partial answer that breaks", chunk_size=4,
                                delivery=Delivery(drop_after=4, abort=True)))
    answer = await post(proxy, "/api/chat",
                        {"model": "deepseek-chat", "messages": user("hi")})
    assert answer.status == 200
    objects = [json.loads(line) for line in answer.body.decode().splitlines()]
    assert objects[0]["message"]["content"] and objects[0]["done"] is False
    assert list(objects[-1]) == ["error"] and objects[-1]["error"]
    assert proxy.core.pool.inflight == 0


async def test_keep_alives_are_empty_progress_objects(proxy_factory):
    proxy = await proxy_factory({"runtime": {"keepalive_seconds": 0.05}})
    proxy.fake.enqueue(Scripted(answer="late", delivery=Delivery(silence=0.4,
                                                                 comment_every=0.1)))
    answer = await post(proxy, "/api/generate",
                        {"model": "deepseek-chat", "prompt": "hi"})
    objects = [json.loads(line) for line in answer.body.decode().splitlines()]
    idle = [o for o in objects if not o["done"] and o["response"] == ""]
    assert answer.status == 200 and idle
    assert "".join(o["response"] for o in objects) == "late" and objects[-1]["done"]
    # The official client reads the same stream without tripping on them.
    proxy.fake.enqueue(Scripted(answer="late", delivery=Delivery(silence=0.3,
                                                                 comment_every=0.1)))
    parts = [p async for p in await ollama_client(proxy).generate(model="deepseek-chat",
                                                                  prompt="hi", stream=True)]
    assert "".join(p.response for p in parts) == "late"


async def test_a_result_naming_its_call_by_id_answers_that_call(proxy):
    """Two calls of one tool: a result that names the second by
    ``tool_call_id`` answers it, so the next result without an id answers
    the first (matching by name alone gave both results the second call)."""
    proxy.fake.enqueue(Scripted(answer="Both read."))
    calls = [{"id": f"c{n}", "function": {"name": "read_file", "arguments": {"path": path}}}
             for n, path in ((1, "a.txt"), (2, "b.txt"))]
    answer = await post(proxy, "/api/chat", {
        "model": "deepseek-chat", "stream": False, "tools": [READ_TOOL], "messages": [
            {"role": "user", "content": "read both"},
            {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c2", "tool_name": "read_file", "content": "BBB"},
            {"role": "tool", "tool_name": "read_file", "content": "AAA"}]})
    assert answer.status == 200 and answer.json()["message"]["content"] == "Both read."
    prompt = completion_bodies(proxy)[0]["prompt"]
    assert "[tool_result name=read_file id=c2]\nBBB" in prompt
    assert "[tool_result name=read_file id=c1]\nAAA" in prompt


def test_thousands_of_tool_results_find_their_calls_by_lookup(monkeypatch):
    """Each tool message scanned the open calls for its id, then its name,
    and cut the call out of a list: an agent history of 20,000 calls
    answered in reverse (2.4 MB) took 112 s to parse. Calls are now found
    by index: no call is compared with another."""
    from ds2proxy.canonical import ToolCall
    from ds2proxy_plugins.ollama.request import parse_messages
    compared = []
    monkeypatch.setattr(ToolCall, "__eq__", lambda a, b: compared.append(1) or a is b)
    count = 2000
    calls = [{"id": f"c{n}", "function": {"name": "read", "arguments": {}}}
             for n in range(count)] + [{"function": {"name": "grep", "arguments": {}}}]
    messages = parse_messages([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        *({"role": "tool", "tool_call_id": f"c{n}", "content": "x"}
          for n in reversed(range(count))),
        {"role": "tool", "tool_name": "grep", "content": "y"},
        {"role": "tool", "content": "z"}])
    answered = [m.tool_results[0].call_id for m in messages[2:]]
    assert answered == [f"c{n}" for n in reversed(range(count))] + [f"call_1_{count}", ""]
    assert compared == []


# -- request fields -----------------------------------------------------------------


@pytest.mark.parametrize("path, body, words", [
    ("/api/chat", {"messages": [], "options": "bad"}, "options"),
    ("/api/chat", {"messages": [], "format": "xml"}, "format"),
    ("/api/chat", {"think": "very"}, "think"),
    ("/api/chat", {"messages": [], "stream": "yes"}, "stream"),
    ("/api/chat", {"messages": [], "tools": "bad"}, "tools"),
    ("/api/generate", {"prompt": 0}, "prompt"),
    ("/api/generate", {"prompt": False}, "prompt"),
    ("/api/generate", {"prompt": []}, "prompt"),
    ("/api/generate", {"prompt": "", "options": {"num_predict": "many"}}, "num_predict"),
])
async def test_a_load_request_is_checked_like_any_other(proxy, path, body, words):
    """An empty prompt or message list only loads the model, but Ollama reads
    the whole body first: a wrong type is a 400, not a ``done_reason: "load"``
    that hides the client's mistake (``prompt: 0`` was taken for no prompt)."""
    answer = await post(proxy, path, {"model": "deepseek-chat", **body})
    assert answer.status == 400 and words in answer.json()["error"]
    assert completion_bodies(proxy) == []


def assistant_call(arguments: object) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "read_file", "arguments": arguments}}]}


@pytest.mark.parametrize("message, words", [
    ({"role": "user", "content": 0}, "messages[0].content"),
    ({"role": "user", "content": []}, "messages[0].content"),
    ({"role": "user", "content": False}, "messages[0].content"),
    ({"role": "assistant", "content": "x", "thinking": 1}, "messages[0].thinking"),
    ({"role": "tool", "content": "x", "tool_name": 1}, "messages[0].tool_name"),
    ({"role": "tool", "content": "x", "tool_call_id": 5}, "messages[0].tool_call_id"),
    (assistant_call('{"path": "a.txt"}'), "messages[0].tool_calls[0].function.arguments"),
    (assistant_call(["a.txt"]), "messages[0].tool_calls[0].function.arguments"),
])
async def test_message_fields_of_the_wrong_type_are_400(proxy, message, words):
    """Ollama's message fields are strings (arguments an object); a number, a
    list or false used to read as an empty message (or went on as a string)."""
    answer = await post(proxy, "/api/chat", {"model": "deepseek-chat", "stream": False,
                                             "messages": [message, *user("go on")]})
    assert answer.status == 400 and words in answer.json()["error"]
    assert completion_bodies(proxy) == []


async def test_message_roles_are_read_case_blind(proxy):
    """Ollama lowercases a message's role: a "SYSTEM" message is the system
    prompt, not a user turn."""
    proxy.fake.enqueue(Scripted(answer="ok"))
    resp = await ollama_client(proxy).chat(model="deepseek-chat", messages=[
        {"role": "SYSTEM", "content": "Answer in French."}, {"role": "User", "content": "hi"}])
    assert resp.message.content == "ok"
    prompt = completion_bodies(proxy)[0]["prompt"]
    system = prompt.split("<｜System｜>", 1)[1].split("<｜end▁of▁instructions｜>", 1)[0]
    assert "Answer in French." in system
    assert "<｜User｜>hi" in prompt


@pytest.mark.parametrize("path, body, words", [
    ("/api/generate", {"prompt": "x", "suffix": 1}, "suffix"),
    ("/api/generate", {"prompt": "x", "template": ["{{ .Prompt }}"]}, "template"),
    ("/api/generate", {"prompt": "x", "raw": "yes"}, "raw"),
    ("/api/generate", {"prompt": "x", "context": "1,2"}, "context"),
    ("/api/generate", {"prompt": "x", "context": [1, "2"]}, "context"),
    ("/api/generate", {"prompt": "x", "raw": True, "system": "Be brief."}, "raw mode"),
    ("/api/generate", {"prompt": "x", "raw": True, "template": "{{ .Prompt }}"}, "raw mode"),
    ("/api/generate", {"prompt": "x", "raw": True, "context": [1, 2]}, "raw mode"),
    ("/api/generate", {"prompt": "x", "keep_alive": "5x"}, "keep_alive"),
    ("/api/generate", {"prompt": "x", "keep_alive": "5"}, "keep_alive"),
    ("/api/chat", {"messages": user("x"), "keep_alive": "m"}, "keep_alive"),
    ("/api/chat", {"messages": user("x"), "keep_alive": "+-0"}, "keep_alive"),
    ("/api/chat", {"messages": user("x"), "truncate": "no"}, "truncate"),
    ("/api/chat", {"messages": user("x"), "shift": 1}, "shift"),
    ("/api/generate", {"prompt": "x", "logprobs": "yes"}, "logprobs"),
    ("/api/chat", {"messages": user("x"), "top_logprobs": 50}, "top_logprobs"),
])
async def test_other_fields_of_the_wrong_type_are_400(proxy, path, body, words):
    """Fields that change nothing here are still read as Ollama reads them: a
    wrong type, a keep_alive that is no duration, or raw mode with a template,
    system or context is a 400, not a turn that silently drops them."""
    answer = await post(proxy, path, {"model": "deepseek-chat", "stream": False, **body})
    assert answer.status == 400 and words in answer.json()["error"]
    assert completion_bodies(proxy) == []


@pytest.mark.parametrize("keep_alive, reason", [
    (0, "unload"), (0.0, "unload"), ("0", "unload"), ("0s", "unload"), ("0m0s", "unload"),
    ("5m", "load"), ("1h30m", "load"), ("-1m", "load"), (-1, "load"), (None, "load"),
])
async def test_keep_alive_zero_in_any_spelling_unloads(proxy, keep_alive, reason):
    """Ollama reads keep_alive as seconds or a Go duration: "0s" unloads like 0."""
    body = {"model": "deepseek-chat", "messages": [], "keep_alive": keep_alive}
    answer = await post(proxy, "/api/chat", body)
    assert answer.status == 200 and answer.json()["done_reason"] == reason
    proxy.fake.enqueue(Scripted(answer="kept"))
    resp = await ollama_client(proxy).generate(model="deepseek-chat", prompt="hi",
                                               keep_alive=keep_alive)
    assert resp.response == "kept"


async def test_a_provider_model_whose_name_has_a_tag_is_served_by_that_name(proxy_factory):
    """``/api/tags`` lists a provider's ``qwen2.5:7b``; chat and show dropped
    the tag as for a native name and answered 404 for ``qwen2.5``."""
    async with FakeProvider(["qwen2.5:7b"], api_key=PROVIDER_KEY) as fake:
        proxy = await proxy_factory({"providers": [{
            "name": "local", "base_url": fake.base_url, "api_key": PROVIDER_KEY,
            "models": ["qwen2.5:7b"]}]})
        fake.enqueue(ProviderReply(text="hi from qwen"))
        sdk = ollama_client(proxy)
        assert "qwen2.5:7b" in [m.model for m in (await sdk.list()).models]
        resp = await sdk.chat(model="qwen2.5:7b", messages=user("hi"))
        assert resp.message.content == "hi from qwen" and resp.model == "qwen2.5:7b"
        assert fake.chat_requests()[0]["model"] == "qwen2.5:7b"
        shown = await sdk.show("qwen2.5:7b")
        assert "completion" in shown.capabilities
        # Its family is the provider, as /api/tags says (show said "deepseek").
        assert shown.details.family == "local"
        # A native name still drops its tag.
        assert (await sdk.show("deepseek-chat:7b")).capabilities


@pytest.mark.parametrize("options, words", [
    ({"num_ctx": "big"}, "options.num_ctx"),
    ({"num_thread": "1"}, "options.num_thread"),
    ({"main_gpu": [0]}, "options.main_gpu"),
    ({"repeat_penalty": "high"}, "options.repeat_penalty"),
    ({"min_p": True}, "options.min_p"),
    ({"use_mmap": "yes"}, "options.use_mmap"),
])
async def test_options_ollama_knows_are_checked_for_their_type(proxy, options, words):
    """Ollama refuses a known option of the wrong type (``option "num_ctx"
    must be of type integer``); here it was passed over and the turn ran."""
    answer = await post(proxy, "/api/chat", {"model": "deepseek-chat", "stream": False,
                                             "messages": user("x"), "options": options})
    assert answer.status == 400 and words in answer.json()["error"]
    assert completion_bodies(proxy) == []


async def test_whole_numbers_written_as_floats_are_integer_options(proxy):
    """A JSON 5.0 is a number like 5 to Ollama; num_predict 5.0 was a 400 here."""
    proxy.fake.enqueue(Scripted(answer="word " * 200, chunk_size=5))
    short = await post(proxy, "/api/chat", {
        "model": "deepseek-chat", "stream": False, "messages": user("go"),
        "options": {"num_predict": 5.0, "seed": 42.0, "top_k": 40.0, "num_ctx": 4096.0,
                    "temperature": 1, "mirostat": "unknown options are ignored"}})
    assert short.status == 200 and short.json()["done_reason"] == "length"
    assert completion_bodies(proxy)[0]["temperature"] == 1.0


@pytest.mark.parametrize("fields", [{"logprobs": True}, {"top_logprobs": 3},
                                    {"logprobs": True, "top_logprobs": 3}])
async def test_asking_for_logprobs_is_a_400(proxy, fields):
    """Ollama answers ``logprobs`` with each token's probability; here they
    were accepted and no ``logprobs`` came back, without a word."""
    with pytest.raises(ollama.ResponseError) as info:
        await ollama_client(proxy).chat(model="deepseek-chat", messages=user("hi"),
                                        **fields)
    assert info.value.status_code == 400 and "logprobs" in info.value.error
    assert completion_bodies(proxy) == []


async def test_integer_options_read_as_ollama_reads_them(proxy):
    """num_predict 0 was a 400 (Ollama limits only a count above 0: no
    limit), and so was seed 1.5 (Ollama drops the fraction); 20 stop
    sequences were refused (Ollama has no cap)."""
    stops = [f"STOP{n}" for n in range(20)]
    for options in ({"num_predict": 0, "seed": 1.5, "num_ctx": 4096.7},
                    {"num_predict": -7, "top_k": 39.9, "stop": stops}):
        proxy.fake.enqueue(Scripted(answer="word " * 30, chunk_size=5))
        answer = await ollama_client(proxy).chat(model="deepseek-chat", messages=user("go"),
                                                 options=options, stream=False)
        assert answer.done_reason == "stop" and answer.message.content == "word " * 30
    proxy.fake.enqueue(Scripted(answer="one two three four five six seven", chunk_size=4))
    cut = await ollama_client(proxy).generate(model="deepseek-chat", prompt="go",
                                              options={"num_predict": 2.9})
    assert cut.done_reason == "length" and cut.eval_count == 2


@pytest.mark.parametrize("body, status, words", [
    # A wrong type in the body is found before the model is looked for ...
    ({"model": "no-such-model", "messages": "hi"}, 400, "messages"),
    ({"model": "no-such-model", "stream": "yes", "messages": user("x")}, 400, "stream"),
    ({"model": "no-such-model", "top_logprobs": 50, "messages": user("x")}, 400,
     "top_logprobs"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "content"),
    # ... and options only after it.
    ({"model": "no-such-model", "options": {"num_ctx": "big"}, "messages": user("x")}, 404,
     "no-such-model"),
    ({"model": "no-such-model", "format": "xml", "messages": user("x")}, 404, "no-such-model"),
])
async def test_checks_come_in_ollama_s_order(proxy, body, status, words):
    """An unknown model was a 404 before the body's own types were checked,
    where Ollama decodes the body first (a 400) and reads options last."""
    answer = await post(proxy, "/api/chat", body)
    assert answer.status == status and words in answer.json()["error"]
    assert completion_bodies(proxy) == []


async def test_null_tool_arguments_are_an_empty_object(proxy_factory):
    """A provider's call with arguments ``null`` went out as
    ``{"input": null}``, an argument no tool declares."""
    async with FakeProvider(["qwen-max"], api_key=PROVIDER_KEY) as fake:
        proxy = await proxy_factory({"providers": [{
            "name": "prov", "base_url": fake.base_url, "api_key": PROVIDER_KEY,
            "models": ["qwen-max"]}]})
        fake.enqueue(ProviderReply(tool_calls=[("read_file", "null")]))
        answer = await ollama_client(proxy).chat(model="qwen-max", messages=user("go"),
                                                 tools=[READ_TOOL], stream=False)
        call = answer.message.tool_calls[0]
        assert call.function.name == "read_file" and dict(call.function.arguments) == {}
