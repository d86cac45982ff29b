"""A large embeddings answer (thousands of vectors, thousands of dimensions)
is encoded and serialised in a worker thread, item by item, and sent
piece by piece: the same bytes the loop would have built. A small one stays on the
loop. Figures: bench/loop_lag_bench.py."""

from __future__ import annotations

import base64
import struct
import threading
from typing import Any

import orjson
import pytest
from conftest import Proxy

from ds2proxy.dialects import large_json
from ds2proxy.embeddings import DeterministicEmbeddings
from ds2proxy.testing.clients import ollama_client, openai_client

DIMENSIONS = 8192
TEXTS = [f"text number {i}" for i in range(large_json.OFF_LOOP_VALUES // DIMENSIONS + 3)]


@pytest.fixture
def built_on(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each answer was serialised on."""
    seen: list[int] = []
    original = large_json.pieces_of

    def recorded(body: dict[str, Any], field: str) -> list[bytes]:
        seen.append(threading.get_ident())
        return original(body, field)

    monkeypatch.setattr(large_json, "pieces_of", recorded)
    return seen


def expected(texts: list[str], dimensions: int = DIMENSIONS) -> list[list[float]]:
    return DeterministicEmbeddings(dimensions).vectors(texts)


async def test_a_large_float_answer_is_built_in_a_thread(proxy: Proxy, built_on: list[int]):
    async with openai_client(proxy) as api:
        resp = await api.embeddings.create(model="text-embedding-3-small", input=TEXTS,
                                           dimensions=DIMENSIONS, encoding_format="float")
    assert [d.embedding for d in resp.data] == expected(TEXTS)
    assert [d.index for d in resp.data] == list(range(len(TEXTS)))
    assert resp.usage.prompt_tokens > 0
    assert built_on and threading.get_ident() not in built_on


async def test_a_large_base64_answer_is_encoded_in_a_thread(proxy: Proxy, built_on: list[int]):
    async with openai_client(proxy) as api:
        raw = await api.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=TEXTS, dimensions=DIMENSIONS,
            encoding_format="base64")
    data = orjson.loads(raw.content)["data"]
    got = [list(struct.unpack(f"<{DIMENSIONS}f", base64.b64decode(d["embedding"])))
           for d in data]
    want = [list(struct.unpack(f"<{DIMENSIONS}f", struct.pack(f"<{DIMENSIONS}f", *v)))
            for v in expected(TEXTS)]
    assert got == want
    assert built_on and threading.get_ident() not in built_on


async def test_a_large_ollama_embed_answer_is_built_in_a_thread(proxy: Proxy,
                                                                 built_on: list[int]):
    resp = await ollama_client(proxy).embed(model="any-embedder", input=TEXTS,
                                            dimensions=DIMENSIONS)
    assert [list(v) for v in resp.embeddings] == expected(TEXTS)
    assert built_on and threading.get_ident() not in built_on


async def test_a_small_answer_stays_on_the_loop(proxy: Proxy, built_on: list[int]):
    async with openai_client(proxy) as api:
        resp = await api.embeddings.create(model="e", input=["one", "two"], dimensions=8,
                                           encoding_format="float")
    assert [d.embedding for d in resp.data] == expected(["one", "two"], 8)
    assert built_on == [threading.get_ident()]


@pytest.mark.parametrize("body,field", [
    ({"object": "list", "data": [[1.5, -2.25e-9], [3]], "model": 'm "data":[]',
      "usage": {"n": 1}}, "data"),
    ({"data": []}, "data"),
    ({"model": "x", "embeddings": [[0.1]]}, "embeddings"),
    ({"embeddings": [[0.1], [0.2]], "total_duration": 5}, "embeddings"),
])
def test_pieces_make_exactly_the_whole(body: dict[str, Any], field: str):
    whole = orjson.dumps(body)
    assert large_json.dumps_in_pieces(body, field) == whole
    items = list(body[field])
    drained = {**body, field: large_json.drained(items)}
    assert large_json.dumps_in_pieces(drained, field) == whole
    assert items == [None] * len(items)  # each freed as it was written
