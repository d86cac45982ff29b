"""Gemini ``embedContent`` / ``batchEmbedContents`` with the official
google-genai client on a live server: the same engine as ``/v1/embeddings``
answers, in Google's shapes; bad requests are Google's 400s before the
engine is asked."""

from __future__ import annotations

import asyncio

import pytest
from google.genai import errors, types

from ds2proxy.testing.clients import gemini_client, openai_client, post

MODEL = "gemini-embedding-001"


async def openai_vector(proxy, text: str, dimensions: int) -> list[float]:
    async with openai_client(proxy) as api:
        answer = await api.embeddings.create(model=MODEL, input=text, dimensions=dimensions,
                                             encoding_format="float")
    return answer.data[0].embedding


async def test_embed_content_through_the_client_was_a_404(proxy):
    """``client.models.embed_content`` answered 404 "method
    'batchEmbedContents' is not served" though embeddings are enabled for
    the OpenAI and Ollama routes."""
    client = gemini_client(proxy)
    answer = await client.aio.models.embed_content(
        model=MODEL, contents=["alpha", "beta"],
        config=types.EmbedContentConfig(output_dimensionality=8, task_type="RETRIEVAL_QUERY"))
    vectors = [e.values for e in answer.embeddings]
    assert vectors == [await openai_vector(proxy, "alpha", 8),
                       await openai_vector(proxy, "beta", 8)]
    sync = await asyncio.to_thread(client.models.embed_content, model=f"models/{MODEL}",
                                   contents="alpha")
    assert len(sync.embeddings[0].values) == 1536


async def test_embed_content_and_a_batch_of_mixed_sizes_by_hand(proxy):
    base = f"{proxy.url}/v1beta/models/{MODEL}"
    one = await post(f"{base}:embedContent", {
        "content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": 4},
        proxy.headers())
    assert one.status == 200 and one.json() == {
        "embedding": {"values": await openai_vector(proxy, "alpha", 4)}}
    batch = await post(f"{base}:batchEmbedContents", {"requests": [
        {"model": f"models/{MODEL}", "content": {"parts": [{"text": "alpha"}]},
         "output_dimensionality": 4},
        {"content": {"parts": [{"text": "beta"}]}, "outputDimensionality": 6},
        {"content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": "4"},
        {"content": {"parts": [{"text": "beta"}]}, "outputDimensionality": 0}]},
        proxy.headers())
    sizes = [len(e["values"]) for e in batch.json()["embeddings"]]
    assert batch.status == 200 and sizes == [4, 6, 4, 1536]
    first, _, third, _ = batch.json()["embeddings"]
    assert first == third == one.json()["embedding"]


@pytest.mark.parametrize("method, body, words", [
    ("embedContent", {}, "content"),
    ("embedContent", {"content": {"parts": [{"inlineData": {"data": ""}}]}}, "no text"),
    ("embedContent", {"content": {"parts": [{"text": 5}]}}, "must be a string"),
    ("embedContent", {"content": {"parts": [{"text": "x"}]}, "taskType": "SUMMARY"},
     "taskType"),
    ("embedContent", {"content": {"parts": [{"text": "x"}]}, "outputDimensionality": -1},
     "outputDimensionality"),
    ("embedContent", {"content": {"parts": [{"text": "x"}]}, "outputDimensionality": "8x"},
     "outputDimensionality"),
    ("batchEmbedContents", {"requests": []}, "requests"),
    ("batchEmbedContents", {"requests": [{"content": {"parts": [{"text": "x"}]}}] * 101},
     "at most 100"),
    ("batchEmbedContents", {"requests": [{"model": "models/other",
                                          "content": {"parts": [{"text": "x"}]}}]},
     "requests[0].model"),
])
async def test_bad_embedding_requests_are_invalid_argument(proxy, method, body, words):
    answer = await post(f"{proxy.url}/v1beta/models/{MODEL}:{method}", body, proxy.headers())
    error = answer.json()["error"]
    assert answer.status == 400 and error["status"] == "INVALID_ARGUMENT"
    assert words in error["message"]


async def test_embeddings_off_is_501_in_googles_shape(proxy_factory):
    proxy = await proxy_factory({"embeddings": {"provider": ""}})
    with pytest.raises(errors.APIError) as info:
        await gemini_client(proxy).aio.models.embed_content(model=MODEL, contents="x")
    assert info.value.code == 501 and "embeddings.provider" in info.value.message
