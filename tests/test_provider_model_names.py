"""Provider model ids the way real providers spell them — a vendor prefix
with a slash (``meta-llama/Llama-3.1-8B``), an Ollama tag (``qwen3:8b``), a
tier after a colon (``qwen/qwen3-coder:free``) — reach the provider from the
families that carry the model in the path (Gemini) or read tags (Ollama)."""

from __future__ import annotations

import ollama
import pytest
from google import genai
from google.genai import types

from ds2proxy.testing.clients import request
from provider_util import PROVIDER_KEY, fake_provider  # noqa: F401

USER = [{"role": "user", "content": "hi"}]
MODELS = ["meta-llama/Llama-3.1-8B", "qwen/qwen3-coder:free", "qwen3:*", "llama3:latest"]


@pytest.fixture
async def named(proxy_factory, fake_provider):  # noqa: F811
    proxy = await proxy_factory({"providers": [
        {"name": "prov", "base_url": fake_provider.base_url, "api_key": PROVIDER_KEY,
         "models": MODELS}]})
    proxy.provider = fake_provider
    return proxy


def gemini(proxy) -> genai.Client:
    return genai.Client(api_key=proxy.key, http_options=types.HttpOptions(
        base_url=proxy.url, api_version="v1beta"))


@pytest.mark.parametrize("model", ["meta-llama/Llama-3.1-8B", "qwen/qwen3-coder:free"])
async def test_gemini_reaches_a_model_whose_id_holds_a_slash(named, model):
    """Google's SDK puts the id in the path unescaped: the route took one
    path segment, so the listed model answered 404 'no route'."""
    client = gemini(named)
    response = await client.aio.models.generate_content(model=model, contents="hi")
    assert response.text == "Hello from the provider."
    assert named.provider.chat_requests()[-1]["model"] == model
    chunks = [c.text async for c in await client.aio.models.generate_content_stream(
        model=model, contents="hi")]
    assert "".join(chunks) == "Hello from the provider."
    assert (await client.aio.models.get(model=model)).name == f"models/{model}"


@pytest.mark.parametrize("asked, sent", [
    ("qwen3:8b", "qwen3:8b"),  # a provider glob over Ollama tags
    ("qwen/qwen3-coder:free", "qwen/qwen3-coder:free"),
    ("llama3:latest", "llama3:latest"),
    ("llama3", "llama3:latest"),  # Ollama's implied tag
])
async def test_ollama_keeps_the_tag_of_a_provider_model(named, asked, sent):
    """The tag was cut before routing ('qwen3:8b' asked for 'qwen3'), so every
    tagged provider model, listed in /api/tags, answered 404."""
    client = ollama.AsyncClient(host=named.url, headers=named.headers())
    reply = await client.chat(model=asked, messages=USER)
    assert reply.message.content == "Hello from the provider."
    assert named.provider.chat_requests()[-1]["model"] == sent
    shown = await client.show(asked)
    assert shown.modelfile and sent in shown.modelfile


async def test_a_tagged_pool_name_stays_on_the_pool_beside_a_catch_all(proxy_factory,
                                                                       fake_provider):  # noqa: F811
    proxy = await proxy_factory({"providers": [
        {"name": "all", "base_url": fake_provider.base_url, "api_key": PROVIDER_KEY,
         "models": ["*"]}]})
    client = ollama.AsyncClient(host=proxy.url, headers=proxy.headers())
    reply = await client.chat(model="deepseek-r1:14b", messages=USER)
    assert "You said" in reply.message.content and fake_provider.calls == []


async def test_a_listed_tagged_name_goes_to_its_provider_even_if_the_pool_has_the_bare_one(
        proxy_factory, fake_provider):  # noqa: F811
    """A local runtime serving the distilled deepseek-r1:14b lists it by name."""
    proxy = await proxy_factory({"providers": [
        {"name": "local", "base_url": fake_provider.base_url, "api_key": PROVIDER_KEY,
         "models": ["deepseek-r1:14b"]}]})
    client = ollama.AsyncClient(host=proxy.url, headers=proxy.headers())
    reply = await client.chat(model="deepseek-r1:14b", messages=USER)
    assert reply.message.content == "Hello from the provider."
    assert fake_provider.chat_requests()[-1]["model"] == "deepseek-r1:14b"


@pytest.mark.parametrize("path, headers, field, expected", [
    ("/v1/models/{m}", {}, "id", "{m}"),
    ("/models/{m}", {}, "id", "{m}"),
    ("/v1/models/{m}", {"anthropic-version": "2023-06-01"}, "id", "{m}"),
    ("/anthropic/v1/models/{m}", {}, "id", "{m}"),
    ("/v1/models/{m}", {"x-goog-api-key": "k"}, "name", "models/{m}"),
])
async def test_a_listed_model_whose_id_holds_a_slash_is_retrieved(named, path, headers, field,
                                                                  expected):
    """A raw client (or Google's SDK on /v1) sends the slash as it is: the
    one-segment route answered 405 'use POST' for a model /v1/models lists."""
    model = "meta-llama/Llama-3.1-8B"
    reply = await request("GET", named.url + path.format(m=model),
                          headers={**named.headers(), **headers})
    assert reply.status == 200 and reply.json()[field] == expected.format(m=model)
    v1 = genai.Client(api_key=named.key, http_options=types.HttpOptions(
        base_url=named.url, api_version="v1"))
    assert (await v1.aio.models.get(model=model)).name == f"models/{model}"
