"""The providers admin API against a real server and the fake provider:
create, read, update, delete, masking of the key everywhere it could leak,
field-named validation errors, and the test button."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from admin_util import Admin, admin_for
from conftest import Proxy, ProxyFactory
from provider_util import PROVIDER_KEY, fake_provider  # noqa: F401  (fixture)

from ds2proxy.testing.fake_provider import FakeProvider
from ds2proxy.testing.provider_replies import ProviderReply

HEADER_SECRET = "org-secret-header-value-42"
KEY_PREVIEW = "sk-p…01"


def provider_body(fake: FakeProvider, **extra: object) -> dict:
    return {"name": "qwen", "kind": "openai", "base_url": fake.base_url,
            "api_key": PROVIDER_KEY, "models": ["qwen-*"],
            "headers": {"X-Org": HEADER_SECRET}, "timeout_seconds": 30,
            "max_inflight": 4, "reasoning": "think_tags", "tools": True,
            "embeddings_batch_size": 16, **extra}


@pytest.fixture
async def admin(proxy: Proxy) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as http:
        yield await admin_for(proxy, http)


def leaks(raw: bytes) -> bool:
    return PROVIDER_KEY.encode() in raw or HEADER_SECRET.encode() in raw


async def test_create_list_read_update_delete(admin: Admin, fake_provider: FakeProvider):
    created = await admin.ok("POST", "/admin/providers", json=provider_body(fake_provider))
    assert created["total_providers"] == 1
    view = created["provider"]
    assert view["name"] == "qwen" and view["models"] == ["qwen-*"]
    assert view["api_key"] == KEY_PREVIEW and view["has_api_key"] is True
    # Applied: the typed config has the provider with its real key.
    provider = admin.proxy.core.config.provider_named("qwen")
    assert provider is not None and provider.api_key == PROVIDER_KEY
    assert provider.reasoning == "think_tags" and provider.embeddings_batch_size == 16
    # On disk, fsync'd by the one writer.
    on_disk = json.loads(admin.proxy.config_path.read_text())["providers"][0]
    assert on_disk["api_key"] == PROVIDER_KEY and on_disk["headers"]["X-Org"] == HEADER_SECRET

    listing = await admin.call("GET", "/admin/providers")
    assert listing.status == 200 and not leaks(listing.raw)
    assert [p["name"] for p in listing.json()["items"]] == ["qwen"]
    one = await admin.call("GET", "/admin/providers/qwen")
    assert one.status == 200 and not leaks(one.raw) and one.json()["headers"]["X-Org"] != ""

    # Sending the read back (masked key and header) keeps both secrets.
    edited = {**one.json(), "models": ["qwen-max", "qwen-plus"], "max_inflight": 2}
    updated = await admin.call("PUT", "/admin/providers/qwen", json=edited)
    assert updated.status == 200 and not leaks(updated.raw)
    provider = admin.proxy.core.config.provider_named("qwen")
    assert provider.api_key == PROVIDER_KEY and dict(provider.headers)["X-Org"] == HEADER_SECRET
    assert provider.models == ("qwen-max", "qwen-plus") and provider.max_inflight == 2
    # A partial update changes only what it names; a new key replaces the old.
    await admin.ok("PUT", "/admin/providers/qwen", json={"api_key": "sk-new-key-000000000000"})
    provider = admin.proxy.core.config.provider_named("qwen")
    assert provider.api_key == "sk-new-key-000000000000" and provider.max_inflight == 2

    deleted = await admin.ok("DELETE", "/admin/providers/qwen")
    assert deleted["total_providers"] == 0
    assert admin.proxy.core.config.providers == ()
    assert (await admin.call("GET", "/admin/providers/qwen")).status == 404
    assert (await admin.call("DELETE", "/admin/providers/qwen")).status == 404


async def test_the_key_never_leaks_through_config_reads_or_logs(
        admin: Admin, fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    await admin.ok("POST", "/admin/providers", json=provider_body(fake_provider))
    await admin.ok("PUT", "/admin/providers/qwen", json={"tools": False})
    for path in ("/admin/config", "/admin/providers", "/admin/providers/qwen",
                 "/admin/settings", "/admin/overview"):
        reply = await admin.call("GET", path)
        assert reply.status == 200 and not leaks(reply.raw), path
    masked = (await admin.ok("GET", "/admin/config"))["providers"][0]
    assert masked["api_key"] == KEY_PREVIEW and masked["headers"]["X-Org"] == "org-…42"
    assert not leaks(caplog.text.encode())
    # The backup export is the one place secrets appear (as for account passwords).
    export = await admin.ok("GET", "/admin/config/export")
    assert export["config"]["providers"][0]["api_key"] == PROVIDER_KEY


@pytest.mark.parametrize("change, field", [
    ({"name": "Has Spaces"}, "name"),
    ({"base_url": "ftp://example.com"}, "base_url"),
    ({"base_url": "https://user:pw-secret@example.com/v1"}, "base_url"),
    ({"models": []}, "models"),
    ({"models": ["ok", 3]}, "models"),
    ({"kind": "anthropic"}, "kind"),
    ({"reasoning": "sometimes"}, "reasoning"),
    ({"tools": "yes"}, "tools"),
    ({"timeout_seconds": 0}, "timeout_seconds"),
    ({"max_inflight": 1.5}, "max_inflight"),
    ({"embeddings_batch_size": 0}, "embeddings_batch_size"),
    ({"headers": {"X-Bad": "a\r\nInjected: 1"}}, "headers"),
    ({"api_key": KEY_PREVIEW}, "api_key"),
    ({"modles": ["x"]}, "modles"),
])
async def test_bad_fields_are_400s_naming_the_field(admin: Admin, fake_provider: FakeProvider,
                                                    change: dict, field: str):
    reply = await admin.call("POST", "/admin/providers",
                             json={**provider_body(fake_provider), **change})
    assert reply.status == 400, reply.raw
    body = reply.json()
    assert body["field"] == field and field in body["errors"]
    if field == "modles":
        assert "did you mean 'models'?" in body["errors"][field]
    assert not leaks(reply.raw)
    assert admin.proxy.core.config.providers == ()


async def test_every_bad_field_is_reported_at_once_and_required_ones_named(admin: Admin):
    reply = await admin.call("POST", "/admin/providers", json={"reasoning": "x"})
    assert reply.status == 400
    assert set(reply.json()["errors"]) == {"name", "base_url", "models", "reasoning"}


async def test_duplicates_and_references_are_refused(admin: Admin,
                                                     fake_provider: FakeProvider):
    await admin.ok("POST", "/admin/providers", json=provider_body(fake_provider))
    again = await admin.call("POST", "/admin/providers", json=provider_body(fake_provider))
    assert again.status == 409
    await admin.ok("POST", "/admin/providers",
                   json=provider_body(fake_provider, name="other", models=["bge-m3"]))
    renamed = await admin.call("PUT", "/admin/providers/other", json={"name": "qwen"})
    assert renamed.status == 409
    # The embeddings setting names it: deleting it would leave a dangling name.
    await admin.ok("PUT", "/admin/settings", json={"embeddings": {"provider": "other"}})
    refused = await admin.call("DELETE", "/admin/providers/other")
    assert refused.status == 400 and refused.json()["field"] == "embeddings.provider"
    assert admin.proxy.core.config.provider_named("other") is not None
    await admin.proxy.store.update(lambda doc: doc.__setitem__(
        "model_routes", {"qwen-max": ["pool", "qwen:qwen-max"]}))
    routed = await admin.call("DELETE", "/admin/providers/qwen")
    assert routed.status == 400 and routed.json()["field"].startswith("model_routes.")
    assert admin.proxy.core.config.provider_named("qwen") is not None


async def test_the_test_button_lists_models_and_reports_latency(
        admin: Admin, fake_provider: FakeProvider):
    fake_provider.models += ["qwen-plus", "bge-m3"]
    await admin.ok("POST", "/admin/providers", json=provider_body(fake_provider))
    result = await admin.ok("POST", "/admin/providers/qwen/test")
    assert result["success"] is True and result["status_code"] == 200
    assert result["models"] == ["qwen-max", "qwen-plus", "bge-m3"]
    assert isinstance(result["response_time"], int) and result["response_time"] >= 0
    call = fake_provider.calls[-1]
    assert call.path == "/v1/models" and call.headers["X-Org"] == HEADER_SECRET
    # The listing now says which of the provider's models this entry serves.
    listed = (await admin.ok("GET", "/admin/providers"))["items"][0]
    assert listed["serves"] == ["qwen-max", "qwen-plus"] and listed["last_test"]["success"]

    chat = await admin.ok("POST", "/admin/providers/qwen/test", json={"model": "qwen-max"})
    assert chat["success"] is True and chat["model"] == "qwen-max"
    body = fake_provider.chat_requests()[-1]
    assert body["model"] == "qwen-max" and body["max_tokens"] == 1


REASONING_REFUSAL = ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                     "Use 'max_completion_tokens' instead.")


async def test_the_test_button_sends_the_limit_under_the_name_the_model_takes(
        admin: Admin, fake_provider: FakeProvider):
    """The button always sent ``max_tokens: 1``: a reasoning model that takes
    only ``max_completion_tokens`` showed as failing while real requests
    (which learn the name from the refusal) worked. It now sends what a turn
    would, learns alike, and turns learn from it; a configured name is sent
    as it is (no second try)."""
    fake_provider.refused_fields["max_tokens"] = REASONING_REFUSAL
    await admin.ok("POST", "/admin/providers", json=provider_body(fake_provider))
    result = await admin.ok("POST", "/admin/providers/qwen/test", json={"model": "qwen-max"})
    assert result["success"] is True and result["status_code"] == 200
    assert result["limit_field"] == "max_completion_tokens"
    again = await admin.ok("POST", "/admin/providers/qwen/test", json={"model": "qwen-max"})
    assert again["success"] is True and "limit_field" not in again
    sent = [(b.get("max_tokens"), b.get("max_completion_tokens"))
            for b in fake_provider.chat_requests()]
    assert sent == [(1, None), (None, 1), (None, 1)]
    assert admin.proxy.core.providers.client("qwen").limit_field("qwen-max") \
        == "max_completion_tokens"

    await admin.ok("PUT", "/admin/providers/qwen", json={"max_tokens_field": "max_tokens"})
    fixed = await admin.ok("POST", "/admin/providers/qwen/test", json={"model": "qwen-max"})
    assert fixed["success"] is False and fixed["status_code"] == 400
    assert "max_completion_tokens" in fixed["message"] and "limit_field" not in fixed
    assert len(fake_provider.chat_requests()) == 4


async def test_a_refused_key_is_reported_without_the_key(admin: Admin,
                                                         fake_provider: FakeProvider):
    wrong = "sk-wrong-key-0987654321zyxwvu"
    await admin.ok("POST", "/admin/providers", json=provider_body(fake_provider, api_key=wrong))
    reply = await admin.call("POST", "/admin/providers/qwen/test")
    result = reply.json()
    assert reply.status == 200 and result["success"] is False
    assert result["status_code"] == 401 and "Incorrect API key" in result["message"]
    assert wrong.encode() not in reply.raw and not leaks(reply.raw)


async def test_an_unreachable_provider_is_reported(admin: Admin, proxy_factory: ProxyFactory):
    async with FakeProvider() as gone:
        url = gone.base_url
    await admin.ok("POST", "/admin/providers", json={"name": "gone", "base_url": url,
                                                     "models": ["m"]})
    result = await admin.ok("POST", "/admin/providers/gone/test")
    assert result["success"] is False and result["status_code"] == 0
    assert result["message"].startswith("request failed")
    missing = await admin.call("POST", "/admin/providers/nobody/test")
    assert missing.status == 404


async def test_the_listing_shows_a_cooldown(admin: Admin, fake_provider: FakeProvider):
    await admin.ok("POST", "/admin/providers", json=provider_body(fake_provider))
    healthy = (await admin.ok("GET", "/admin/providers/qwen"))
    assert (healthy["state"], healthy["inflight"]) == ("healthy", 0)
    await admin.ok("PUT", "/admin/settings", json={"embeddings": {"provider": "qwen"}})
    fake_provider.fail_embeddings(ProviderReply(status=429, retry_after="60"))
    async with admin.http.post(admin.proxy.url + "/v1/embeddings",
                               headers=admin.proxy.headers(),
                               json={"model": "qwen-max", "input": "x"}) as resp:
        assert resp.status == 429
    cooling = await admin.ok("GET", "/admin/providers/qwen")
    assert cooling["state"] == "cooling_down" and 0 < cooling["cooldown_seconds"] <= 60
    # A read with the health facts in it can still be sent back as an update.
    await admin.ok("PUT", "/admin/providers/qwen", json=cooling)


async def test_the_embeddings_engine_must_exist(admin: Admin):
    for name, hint in (("deterministic", "'testing'"), ("nobody", "no provider named")):
        reply = await admin.call("PUT", "/admin/settings", json={"embeddings": {"provider": name}})
        assert reply.status == 400 and hint in reply.json()["errors"]["embeddings.provider"]
    assert admin.proxy.core.config.embeddings.provider == "testing"


@pytest.mark.parametrize("mode", ["merge", "replace"])
async def test_importing_a_masked_read_keeps_the_secrets(admin: Admin,
                                                         fake_provider: FakeProvider,
                                                         mode: str):
    await admin.ok("POST", "/admin/providers", json=provider_body(fake_provider))
    masked = await admin.ok("GET", "/admin/config")
    doc = {"providers": masked["providers"]}
    if mode == "replace":
        doc = {**admin.proxy.store.snapshot(), **doc}
    await admin.ok("POST", "/admin/config/import", json={"config": doc, "mode": mode})
    provider = admin.proxy.core.config.provider_named("qwen")
    assert provider.api_key == PROVIDER_KEY and dict(provider.headers)["X-Org"] == HEADER_SECRET


async def test_the_config_route_points_to_the_providers_api(admin: Admin):
    reply = await admin.call("POST", "/admin/config", json={"providers": []})
    assert reply.status == 400
    assert reply.json()["errors"]["providers"] == "cannot be set here; use /admin/providers"


@pytest.mark.parametrize("change, field, problem", [
    ({"base_url": "https://user:pw-secret@example.com/v1"}, "base_url", "user or password"),
    ({"base_url": "ftp://user:pw-secret@example.com/v1"}, "base_url", "http(s) URL"),
    ({"api_key": "pw-secret with-a-space"}, "api_key", "spaces"),
    ({"api_key": "pw-secret\nInjected: 1"}, "api_key", "control characters"),
])
@pytest.mark.parametrize("mode", ["merge", "replace"])
async def test_an_import_checks_a_provider_like_the_providers_api(
        admin: Admin, fake_provider: FakeProvider, change: dict, field: str, problem: str,
        mode: str):
    """The import path takes the same secrets rule: a credential in base_url
    would be shown in every read and log line, and the error never quotes it."""
    before = admin.proxy.config_path.read_bytes()
    provider = {**provider_body(fake_provider), **change}
    reply = await admin.call("POST", f"/admin/config/import?mode={mode}",
                             json={"providers": [provider]})
    assert reply.status == 400, reply.raw
    assert reply.json()["field"] == f"providers[0].{field}" and problem in reply.json()["detail"]
    assert b"pw-secret" not in reply.raw
    assert admin.proxy.config_path.read_bytes() == before


async def test_the_models_it_serves_ignore_case_as_routing_does(admin: Admin,
                                                                 fake_provider: FakeProvider):
    """Routing matches names and globs whatever their case; the listing's
    'serves' compared them case-sensitively and showed none for Qwen/…."""
    fake_provider.models[:] = ["Qwen/Qwen2.5-72B", "QWEN-MAX", "bge-m3"]
    await admin.ok("POST", "/admin/providers",
                   json=provider_body(fake_provider, models=["qwen/*", "qwen-max"]))
    await admin.ok("POST", "/admin/providers/qwen/test")
    listed = await admin.ok("GET", "/admin/providers/qwen")
    assert listed["serves"] == ["Qwen/Qwen2.5-72B", "QWEN-MAX"]
    assert admin.proxy.core.providers.owner("Qwen/Qwen2.5-72B") == "qwen"


async def test_a_provider_fixed_in_the_admin_is_used_at_once_not_after_its_cooldown(
        admin: Admin, fake_provider: FakeProvider):
    """A wrong base_url (nothing listening) cooled the provider down; after
    the admin corrected it, every chat still got 429 provider_cooling_down
    until the old cooldown ran out."""
    import openai
    from proxy_servers import free_port

    wrong = f"http://127.0.0.1:{free_port()}/v1"
    await admin.ok("POST", "/admin/providers", json=provider_body(fake_provider, base_url=wrong))
    client = openai.AsyncOpenAI(base_url=admin.proxy.url + "/v1", api_key=admin.proxy.key,
                                max_retries=0)
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="qwen-max",
                                             messages=[{"role": "user", "content": "hi"}])
    assert admin.proxy.core.providers.health.seconds_left("qwen") > 0
    await admin.ok("PUT", "/admin/providers/qwen", json={"base_url": fake_provider.base_url})
    answer = await client.chat.completions.create(model="qwen-max",
                                                  messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Hello from the provider."
    assert admin.proxy.core.providers.health.view("qwen")["state"] == "healthy"
