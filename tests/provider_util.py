"""A ds2proxy with a fake OpenAI-compatible provider beside the fake upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ds2proxy.testing.fake_provider import FakeProvider

PROVIDER_KEY = "sk-provider-secret-0001"
PROVIDER_MODEL = "qwen-max"


def provider_config(fake: FakeProvider, **overrides: Any) -> dict[str, Any]:
    """One provider, ``prov``, serving ``qwen-*`` (listed: qwen-max)."""
    entry = {"name": "prov", "base_url": fake.base_url, "api_key": PROVIDER_KEY,
             "models": [PROVIDER_MODEL, "qwen-*"], **overrides}
    return {"providers": [entry]}


@pytest.fixture
async def fake_provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider([PROVIDER_MODEL], api_key=PROVIDER_KEY) as fake:
        yield fake
