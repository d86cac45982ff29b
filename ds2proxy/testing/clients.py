"""Clients for tests against a running proxy: one raw HTTP call with one
reply shape, and the official SDK clients built the same way every time.

``server`` is anything with ``url`` and ``key`` (the test fixture's proxy):
the SDKs get the proxy's managed key and no retries, so a test sees the
proxy's first answer. The SDKs are test extras, imported when asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from multidict import CIMultiDict


class Server(Protocol):
    url: str
    key: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A raw HTTP answer, read whole."""

    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


async def request(method: str, url: str, body: Any = None,
                  headers: dict[str, str] | None = None) -> Reply:
    """One call: a dict or list body goes as JSON, ``str`` as UTF-8, bytes as
    they are; ``Content-Type`` is JSON unless ``headers`` name another."""
    sent = CIMultiDict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else \
            body.encode() if isinstance(body, str) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, data=data, headers=sent) as resp:
            return Reply(resp.status, CIMultiDict(resp.headers), await resp.read())


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return await request("POST", url, body, headers)


def openai_client(server: Server, path: str = "/v1", *, key: str | None = None,
                  sync: bool = False, **options: Any) -> Any:
    """``AsyncOpenAI`` (``OpenAI`` with ``sync``) on ``path``."""
    import openai

    kind = openai.OpenAI if sync else openai.AsyncOpenAI
    return kind(base_url=server.url + path, api_key=key or server.key, max_retries=0,
                **options)


def anthropic_client(server: Server, path: str = "", *, key: str | None = None,
                     sync: bool = False, **options: Any) -> Any:
    """``AsyncAnthropic`` (``Anthropic`` with ``sync``) on ``path``; ``options``
    may replace the key with ``auth_token``."""
    import anthropic

    kind = anthropic.Anthropic if sync else anthropic.AsyncAnthropic
    options = {"api_key": key or server.key, **options}
    return kind(base_url=server.url + path, max_retries=0, **options)


def gemini_client(server: Server, api_version: str = "v1beta", *, key: str | None = None
                  ) -> Any:
    from google import genai
    from google.genai import types

    options = types.HttpOptions(base_url=server.url, api_version=api_version)
    return genai.Client(api_key=key or server.key, http_options=options)


def ollama_client(server: Server, headers: dict[str, str] | None = None) -> Any:
    """``headers`` default to the managed key as a Bearer token."""
    import ollama

    sent = {"Authorization": f"Bearer {server.key}"} if headers is None else headers
    return ollama.AsyncClient(host=server.url, headers=sent)
