"""``POST /v1/embeddings`` through the official client, on a live server."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
import threading

import aiohttp
import openai
import pytest
from token_util import reference_tokens

from ds2proxy.testing.clients import openai_client


def norm(vector: list[float]) -> float:
    return math.sqrt(math.fsum(v * v for v in vector))


async def test_deterministic_vectors_are_stable_unit_vectors(proxy):
    async with openai_client(proxy) as api:
        first = await api.embeddings.create(model="text-embedding-3-small",
                                            input=["alpha", "beta", "alpha"])
        again = await api.embeddings.create(model="text-embedding-3-small", input="alpha")
    vectors = [d.embedding for d in first.data]
    assert [d.index for d in first.data] == [0, 1, 2]
    assert all(len(v) == 1536 for v in vectors)
    assert vectors[1] != vectors[0]
    # The default wire format is base64 float32: equal to float32 precision.
    assert vectors[0] == vectors[2] == again.data[0].embedding
    assert all(math.isclose(norm(v), 1.0, rel_tol=1e-6) for v in vectors)
    assert first.model == "text-embedding-3-small"
    assert first.usage.prompt_tokens == reference_tokens("alpha") * 2 + reference_tokens("beta")


async def test_float_format_and_dimensions_through_the_sync_client(proxy):
    with openai_client(proxy, sync=True) as sync:
        resp = await asyncio.to_thread(sync.embeddings.create, model="e", input="x",
                                       dimensions=256, encoding_format="float")
    vector = resp.data[0].embedding
    assert len(vector) == 256 and math.isclose(norm(vector), 1.0, rel_tol=1e-12)


async def test_base64_is_little_endian_float32(proxy):
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/embeddings", headers=proxy.headers(),
                             json={"model": "e", "input": "x", "dimensions": 8,
                                   "encoding_format": "base64"}) as resp:
            b64 = (await resp.json())["data"][0]["embedding"]
        async with http.post(proxy.url + "/v1/embeddings", headers=proxy.headers(),
                             json={"model": "e", "input": "x", "dimensions": 8}) as resp:
            floats = (await resp.json())["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(b64))
    assert decoded == pytest.approx(floats, rel=1e-6)


async def test_token_array_inputs(proxy):
    async with openai_client(proxy) as api:
        resp = await api.embeddings.create(model="e", input=[[1, 2, 3], [4]],
                                           encoding_format="float")
        single = await api.embeddings.create(model="e", input=[1, 2, 3],
                                             encoding_format="float")
    assert len(resp.data) == 2 and resp.usage.prompt_tokens == 4
    assert single.data[0].embedding == resp.data[0].embedding


async def test_off_is_501_and_the_setting_is_read_live(proxy_factory):
    proxy = await proxy_factory({"embeddings": {"provider": ""}})
    async with openai_client(proxy) as api:
        with pytest.raises(openai.APIStatusError) as err:
            await api.embeddings.create(model="e", input="x")
        await proxy.store.update(lambda doc: doc.__setitem__("embeddings",
                                                             {"provider": "testing"}))
        resp = await api.embeddings.create(model="e", input="x")
    assert err.value.status_code == 501
    assert set(err.value.body) == {"message", "type", "code", "param", "request_id"}
    assert len(resp.data[0].embedding) == 1536


@pytest.mark.parametrize("body, param", [
    ({"model": "e"}, "input"),
    ({"model": "e", "input": []}, "input"),
    ({"input": "x"}, "model"),
    ({"model": "e", "input": "x", "dimensions": 0}, "dimensions"),
    ({"model": "e", "input": "x", "encoding_format": "int8"}, "encoding_format"),
])
async def test_bad_requests_are_400s_in_the_openai_shape(proxy, body, param):
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/embeddings", headers=proxy.headers(),
                             json=body) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


async def test_missing_key_is_401(proxy_factory):
    proxy = await proxy_factory({"auth": {"allow_passthrough": False}})
    async with openai_client(proxy, key="nope") as api:
        with pytest.raises(openai.AuthenticationError):
            await api.embeddings.create(model="e", input="x")


async def test_the_testing_engine_works_off_the_loop_at_the_edges(proxy, monkeypatch):
    """2048 inputs of 8192 dimensions took seconds of hashing on the event
    loop, holding every other request; the vectors are now made in a worker
    thread, the most inputs and both dimension bounds included."""
    from ds2proxy.embeddings import DeterministicEmbeddings

    threads: set[int] = set()
    made = DeterministicEmbeddings.vector

    def vector(self: DeterministicEmbeddings, text: str) -> list[float]:
        threads.add(threading.get_ident())
        return made(self, text)

    monkeypatch.setattr(DeterministicEmbeddings, "vector", vector)
    async with openai_client(proxy) as api:
        most = await api.embeddings.create(model="e", input=[f"t{n}" for n in range(2048)],
                                           dimensions=1, encoding_format="float")
        widest = await api.embeddings.create(model="e", input="x", dimensions=8192)
    assert [d.index for d in most.data] == list(range(2048))
    assert {abs(d.embedding[0]) for d in most.data} == {1.0}
    assert len(widest.data[0].embedding) == 8192
    assert threads and threading.get_ident() not in threads
