"""Keys, quotas and hot reload cover provider requests too."""

from __future__ import annotations

import openai
import pytest

from ds2proxy.testing.provider_replies import ProviderReply

from provider_util import PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401

USER = [{"role": "user", "content": "hi"}]


def client(proxy, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)


async def test_a_daily_token_quota_counts_the_providers_usage(proxy_factory,
                                                              fake_provider):  # noqa: F811
    doc = provider_config(fake_provider)
    doc["keys"] = [{"key": "sk-metered", "name": "metered", "limits": {"tokens_per_day": 50}}]
    proxy = await proxy_factory(doc)
    fake_provider.enqueue(ProviderReply(text="costly", usage=(30, 25)))
    await client(proxy, "sk-metered").chat.completions.create(model=PROVIDER_MODEL,
                                                              messages=USER)
    with pytest.raises(openai.RateLimitError) as info:
        await client(proxy, "sk-metered").chat.completions.create(model=PROVIDER_MODEL,
                                                                  messages=USER)
    assert "50 tokens for today" in info.value.message
    assert len(fake_provider.calls) == 1


async def test_a_keys_model_list_applies_to_provider_models(proxy_factory,
                                                            fake_provider):  # noqa: F811
    doc = provider_config(fake_provider)
    doc["keys"] = [{"key": "sk-chat-only", "name": "chat", "models": ["deepseek-*"]}]
    proxy = await proxy_factory(doc)
    with pytest.raises(openai.PermissionDeniedError):
        await client(proxy, "sk-chat-only").chat.completions.create(model=PROVIDER_MODEL,
                                                                    messages=USER)
    assert fake_provider.calls == []


async def test_providers_and_routes_apply_on_the_next_request(proxy, fake_provider):  # noqa: F811
    with pytest.raises(openai.BadRequestError):
        await client(proxy, proxy.key).chat.completions.create(model=PROVIDER_MODEL,
                                                               messages=USER)

    def add(doc: dict) -> None:
        doc.update(provider_config(fake_provider))

    await proxy.store.update(add)
    fake_provider.enqueue(ProviderReply(text="now routed"))
    answer = await client(proxy, proxy.key).chat.completions.create(model=PROVIDER_MODEL,
                                                                    messages=USER)
    assert answer.choices[0].message.content == "now routed"
    models = [m.id for m in (await client(proxy, proxy.key).models.list()).data]
    assert PROVIDER_MODEL in models


async def test_admin_reads_and_logs_never_show_the_provider_key(proxy_factory, fake_provider,
                                                                caplog):  # noqa: F811
    import aiohttp

    from admin_util import admin_for
    from provider_util import PROVIDER_KEY

    proxy = await proxy_factory(provider_config(fake_provider))
    fake_provider.enqueue(ProviderReply(status=503, error_message=f"echoing {PROVIDER_KEY}"))
    with pytest.raises(openai.InternalServerError) as info:
        await client(proxy, proxy.key).chat.completions.create(model=PROVIDER_MODEL,
                                                               messages=USER)
    assert PROVIDER_KEY not in str(info.value.body)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        view = await admin.ok("GET", "/admin/config")
    assert view["providers"][0]["name"] == "prov"
    assert PROVIDER_KEY not in str(view) and PROVIDER_KEY not in caplog.text
