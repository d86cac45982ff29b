"""Embeddings from a configured provider, through the official openai and
ollama clients: batches of the provider's size seen on the fake, vectors in
input order, dimensions passed through, the provider's usage, and its
failures in each family's own error shape."""

from __future__ import annotations

import aiohttp
import ollama
import openai
import pytest
from conftest import Proxy, ProxyFactory
from provider_util import PROVIDER_KEY, fake_provider, provider_config  # noqa: F401

from ds2proxy.embeddings import DeterministicEmbeddings
from ds2proxy.testing.fake_provider import FakeProvider
from ds2proxy.testing.provider_replies import ProviderReply


def embedding_config(fake: FakeProvider, **embeddings: str) -> dict:
    """The ``prov`` provider (batches of 64) serving the embeddings routes."""
    return {**provider_config(fake, embeddings_batch_size=64),
            "embeddings": {"provider": "prov", **embeddings}}


@pytest.fixture
async def proxy(proxy_factory: ProxyFactory, fake_provider: FakeProvider) -> Proxy:
    return await proxy_factory(embedding_config(fake_provider))


def connect(proxy: Proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=proxy.key, max_retries=0)


async def expected(texts: list[str], dimensions: int = 8) -> list[list[float]]:
    """What the fake computes for each text on its own (so order is checkable)."""
    return await DeterministicEmbeddings(dimensions).embed(texts)


async def test_inputs_go_in_batches_of_the_providers_size(proxy: Proxy,
                                                          fake_provider: FakeProvider):
    texts = [f"text number {i}" for i in range(150)]
    async with connect(proxy) as api:
        resp = await api.embeddings.create(model="bge-m3", input=texts,
                                           encoding_format="float")
    assert fake_provider.embedding_batches == [64, 64, 22]
    assert [d.index for d in resp.data] == list(range(150))
    assert [d.embedding for d in resp.data] == await expected(texts)
    # Usage is the provider's own count (the fake counts words: 3 per input).
    assert resp.usage.prompt_tokens == 450 and resp.usage.total_tokens == 450
    assert resp.model == "bge-m3"
    calls = [c for c in fake_provider.calls if c.path == "/v1/embeddings"]
    assert all(c.headers["Authorization"] == f"Bearer {PROVIDER_KEY}" for c in calls)
    assert [c.body["input"] for c in calls] == [texts[:64], texts[64:128], texts[128:]]


async def test_dimensions_pass_through_only_when_asked(proxy: Proxy,
                                                       fake_provider: FakeProvider):
    async with connect(proxy) as api:
        sized = await api.embeddings.create(model="bge-m3", input="x", dimensions=32)
        plain = await api.embeddings.create(model="bge-m3", input="x")
    bodies = [c.body for c in fake_provider.calls if c.path == "/v1/embeddings"]
    assert bodies[0]["dimensions"] == 32 and "dimensions" not in bodies[1]
    # The client's default base64 wire format round-trips to float32 precision.
    assert sized.data[0].embedding == pytest.approx((await expected(["x"], 32))[0], rel=1e-6)
    assert len(plain.data[0].embedding) == 8


async def test_the_configured_model_id_is_sent(proxy_factory: ProxyFactory,
                                               fake_provider: FakeProvider):
    proxy = await proxy_factory(embedding_config(fake_provider, model="bge-m3"))
    async with connect(proxy) as api:
        raw = await api.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                             input="x")
    assert fake_provider.calls[-1].body["model"] == "bge-m3"
    assert raw.parse().model == "text-embedding-3-small"
    # Which provider and model answered: a header, and the request log.
    assert raw.headers["x-ds2proxy-served-by"] == "prov:bge-m3"
    store = proxy.core.usage.store
    await store.flush()
    rows, _ = await store.requests({}, 10, 0)
    logged = next(r for r in rows if r["route"] == "/v1/embeddings")
    assert logged["served_by"] == "prov:bge-m3" and logged["account"] == "provider:prov"


async def test_ollama_embed_uses_the_provider(proxy: Proxy, fake_provider: FakeProvider):
    texts = [f"w{i}" for i in range(70)]
    api = ollama.AsyncClient(host=proxy.url, headers=proxy.headers())
    resp = await api.embed(model="bge-m3", input=texts, dimensions=16)
    assert fake_provider.embedding_batches == [64, 6]
    assert [list(v) for v in resp.embeddings] == await expected(texts, 16)
    assert resp.prompt_eval_count == 70
    legacy = await api.embeddings(model="bge-m3", prompt="one")
    assert list(legacy.embedding) == (await expected(["one"]))[0]
    assert fake_provider.calls[-1].body["model"] == "bge-m3"


async def test_a_provider_429_is_a_429_with_its_retry_after(proxy: Proxy,
                                                            fake_provider: FakeProvider):
    fake_provider.fail_embeddings(ProviderReply(status=429, retry_after="7"))
    async with connect(proxy) as api:
        with pytest.raises(openai.RateLimitError) as err:
            await api.embeddings.create(model="bge-m3", input="x")
    assert err.value.status_code == 429
    assert err.value.response.headers["retry-after"] == "7"
    assert set(err.value.body) == {"message", "type", "code", "param", "request_id"}
    fake_provider.fail_embeddings(ProviderReply(status=429, retry_after="3"))
    api = ollama.AsyncClient(host=proxy.url, headers=proxy.headers())
    with pytest.raises(ollama.ResponseError) as info:
        await api.embed(model="bge-m3", input="x")
    assert info.value.status_code == 429


async def test_a_provider_cooling_down_is_not_asked_again(proxy: Proxy,
                                                          fake_provider: FakeProvider):
    fake_provider.fail_embeddings(ProviderReply(status=429, retry_after="30"))
    async with connect(proxy) as api:
        with pytest.raises(openai.RateLimitError):
            await api.embeddings.create(model="qwen-max", input="x")
        asked = len(fake_provider.calls)
        with pytest.raises(openai.RateLimitError) as err:
            await api.embeddings.create(model="qwen-max", input="x")
    assert len(fake_provider.calls) == asked
    assert 1 <= int(err.value.response.headers["retry-after"]) <= 30
    assert err.value.body["code"] == "provider_cooling_down"
    view = proxy.core.providers.health.view("prov")
    assert view["state"] == "cooling_down" and proxy.core.providers.inflight("prov") == 0


async def test_an_embeddings_request_holds_one_of_the_providers_slots(
        proxy_factory: ProxyFactory, fake_provider: FakeProvider):
    proxy = await proxy_factory(embedding_config(fake_provider) | {"providers": [
        {**embedding_config(fake_provider)["providers"][0], "max_inflight": 1}]})
    proxy.core.providers.usable("prov").reserve()  # a chat holds the only slot
    async with connect(proxy) as api:
        with pytest.raises(openai.RateLimitError) as err:
            await api.embeddings.create(model="qwen-max", input="x")
    assert err.value.body["code"] == "provider_busy"
    assert not [c for c in fake_provider.calls if c.path == "/v1/embeddings"]


@pytest.mark.parametrize("status, error, code", [
    (503, openai.InternalServerError, 502),
    (500, openai.InternalServerError, 502),
    (400, openai.BadRequestError, 400),
])
async def test_provider_failures_map_to_the_familys_errors(
        proxy: Proxy, fake_provider: FakeProvider, status: int, error: type, code: int):
    fake_provider.fail_embeddings(ProviderReply(status=status, error_message="no such thing"))
    async with connect(proxy) as api:
        with pytest.raises(error) as err:
            await api.embeddings.create(model="bge-m3", input="x")
    assert err.value.status_code == code


async def test_a_failing_batch_ends_the_request_without_sending_the_rest(
        proxy: Proxy, fake_provider: FakeProvider):
    fake_provider.fail_embeddings(ProviderReply(status=502))
    async with connect(proxy) as api:
        with pytest.raises(openai.InternalServerError):
            await api.embeddings.create(model="bge-m3", input=[f"t{i}" for i in range(100)])
    assert len([c for c in fake_provider.calls if c.path == "/v1/embeddings"]) == 1


async def test_a_refused_provider_key_is_a_502_without_the_key(proxy_factory: ProxyFactory,
                                                                fake_provider: FakeProvider):
    config = embedding_config(fake_provider)
    config["providers"][0]["api_key"] = "sk-stale-provider-key-000111"
    proxy = await proxy_factory(config)
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/embeddings", headers=proxy.headers(),
                             json={"model": "bge-m3", "input": "x"}) as resp:
            raw = await resp.read()
            assert resp.status == 502
    assert b"sk-stale-provider-key" not in raw and b"prov" in raw


async def test_an_unreachable_provider_is_a_502(proxy_factory: ProxyFactory):
    async with FakeProvider() as gone:
        url = gone.base_url
    proxy = await proxy_factory({"providers": [{"name": "gone", "base_url": url,
                                                "models": ["m"]}],
                                 "embeddings": {"provider": "gone"}})
    async with connect(proxy) as api:
        with pytest.raises(openai.InternalServerError) as err:
            await api.embeddings.create(model="m", input="x")
    assert err.value.status_code == 502


async def test_a_pass_through_token_does_not_spend_the_providers_key(
        proxy: Proxy, fake_provider: FakeProvider):
    """Only callers with one of this server's keys reach a provider."""
    stranger = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="any-string-at-all",
                                  max_retries=0)
    async with stranger:
        with pytest.raises(openai.PermissionDeniedError) as err:
            await stranger.embeddings.create(model="qwen-max", input="x")
    assert err.value.body["code"] == "provider_needs_key"
    api = ollama.AsyncClient(host=proxy.url, headers={"Authorization": "Bearer any-string"})
    with pytest.raises(ollama.ResponseError) as info:
        await api.embed(model="qwen-max", input="x")
    assert info.value.status_code == 403
    assert not [c for c in fake_provider.calls if c.path == "/v1/embeddings"]
