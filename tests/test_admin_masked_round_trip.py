"""A masked admin read sent back keeps every secret it showed as a preview.

Each read (``GET /admin/config``, a plugin's settings, an account's proxy)
hides secrets behind previews such as ``sk-a…3f`` or ``socks5://user:…@host``;
each write that accepts that read back (import merge and replace, ``POST
/admin/config``, ``PUT`` of plugin settings or of an account's proxy) must
store the secret, never the preview.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from admin_util import PLUGIN_SECRET, Admin, admin_for, secret_config
from conftest import ProxyFactory

PROXY_PASSWORD = "proxy-pass-5f4e3d2c1b"
REDIS_PASSWORD = "redis-pass-9a8b7c6d5e"
HELLO_TOKEN = "hello-plugin-token-0a1b2c3d"
PROVIDER_KEY = "sk-provider-0123456789abcdef"
URL_PASSWORD = "url-pass-1a2b3c4d"
HOOK = f"https://bot:{URL_PASSWORD}@hooks.example/notify"
# Secrets a plugin names in its own words: each was shown in full by every
# admin read (only a few exact names such as "token" or "api_key" were masked).
PLUGIN_OWN_WORDS = {"client_secret": "client-secret-8c7b6a5f4e",
                    "authToken": "auth-token-3e4f5a6b7c",
                    "webhook-password": "hook-pass-2d3e4f5a6b",
                    "private_key": "priv-key-9f8e7d6c5b", "signing_key": "sign-key-1b2c3d4e5f"}
# A list of keys (for rotation) under a secret's name: shown in full too.
ROTATED_KEYS = ["sk-rotation-one-0a0b0c", "sk-rotation-two-1d1e1f"]
SECRETS = (PROXY_PASSWORD, REDIS_PASSWORD, HELLO_TOKEN, PROVIDER_KEY, PLUGIN_SECRET,
           URL_PASSWORD, *PLUGIN_OWN_WORDS.values(), *ROTATED_KEYS)


def masked_secrets_config() -> dict:
    """The secret config plus a proxy password, a Redis password, a secret and
    a URL with a password in a loaded plugin's settings, and a provider key."""
    config = secret_config()
    config["accounts"][0]["proxy"] = f"socks5://puser:{PROXY_PASSWORD}@127.0.0.1:1080"
    config["state"] = {"redis_url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6399/0"}
    config["plugins"]["hello"] = {"system": "be brief", "token": HELLO_TOKEN, "hook": HOOK,
                                  **PLUGIN_OWN_WORDS, "api_keys": list(ROTATED_KEYS)}
    config["providers"] = [{"name": "p1", "kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                            "api_key": PROVIDER_KEY, "models": ["x-*"]}]
    return config


@pytest.fixture
async def masked_admin(proxy_factory: ProxyFactory) -> AsyncIterator[Admin]:
    proxy = await proxy_factory(masked_secrets_config())
    async with aiohttp.ClientSession() as http:
        yield await admin_for(proxy, http)


def on_disk(admin: Admin) -> dict:
    return json.loads(admin.proxy.config_path.read_text())


@pytest.mark.parametrize("mode", ["merge", "replace"])
async def test_importing_the_masked_config_changes_nothing(masked_admin: Admin, mode: str):
    a = masked_admin
    view = await a.ok("GET", "/admin/config")
    assert not [s for s in SECRETS if s in json.dumps(view)]
    before = a.proxy.store.snapshot()
    reply = await a.ok("POST", f"/admin/config/import?mode={mode}", json=view)
    # The fields a read adds (health, previews, flags) are not imported, so
    # they are not reported as unknown either.
    assert reply["warnings"] == [] and reply["total_accounts"] == 4
    assert a.proxy.store.snapshot() == before == on_disk(a)


async def test_an_edited_masked_config_keeps_the_secrets_it_did_not_touch(masked_admin: Admin):
    a = masked_admin
    view = await a.ok("GET", "/admin/config")
    view["plugins"]["hello"]["system"] = "be thorough"
    view["accounts"][1]["proxy"] = "http://127.0.0.1:3128"
    await a.ok("POST", "/admin/config/import", json=view)
    doc = on_disk(a)
    assert doc["plugins"]["hello"] == {"system": "be thorough", "token": HELLO_TOKEN,
                                       "hook": HOOK, **PLUGIN_OWN_WORDS,
                                       "api_keys": ROTATED_KEYS}
    assert doc["plugins"]["example"]["api_key"] == PLUGIN_SECRET
    assert doc["state"]["redis_url"] == f"redis://:{REDIS_PASSWORD}@127.0.0.1:6399/0"
    assert doc["accounts"][0]["proxy"].endswith(f":{PROXY_PASSWORD}@127.0.0.1:1080")
    assert doc["accounts"][1] == {"email": "bob@example.com", "password": "pw-bob",
                                  "proxy": "http://127.0.0.1:3128"}


async def test_post_config_with_masked_accounts_keeps_the_proxy_password(masked_admin: Admin):
    a = masked_admin
    before = a.proxy.store.snapshot()["accounts"]
    view = await a.ok("GET", "/admin/config")
    assert view["accounts"][0]["proxy"] == "socks5://puser:…@127.0.0.1:1080"
    await a.ok("POST", "/admin/config", json={"accounts": view["accounts"]})
    assert on_disk(a)["accounts"] == before
    assert a.proxy.core.config.accounts[0].proxy.endswith(f":{PROXY_PASSWORD}@127.0.0.1:1080")


async def test_an_account_proxy_sent_back_masked_keeps_its_password(masked_admin: Admin):
    a = masked_admin
    path = "/admin/accounts/alice@example.com/proxy"
    masked = "socks5://puser:…@127.0.0.1:1080"
    assert (await a.ok("PUT", path, json={"proxy": masked}))["account"]["proxy"] == masked
    assert on_disk(a)["accounts"][0]["proxy"] == f"socks5://puser:{PROXY_PASSWORD}@127.0.0.1:1080"
    # A different proxy is a change, and so is one naming the same host anew.
    fresh = "socks5://puser:another-password@127.0.0.1:1080"
    await a.ok("PUT", path, json={"proxy": fresh})
    assert on_disk(a)["accounts"][0]["proxy"] == fresh


async def test_plugin_settings_sent_back_keep_their_secret(masked_admin: Admin):
    a = masked_admin
    read = await a.ok("GET", "/admin/plugins/hello/settings")
    assert read["settings"] == {"system": "be brief", "token": "hell…3d",
                                "hook": "https://bot:…@hooks.example/notify",
                                **{k: f"{v[:4]}…{v[-2:]}" for k, v in PLUGIN_OWN_WORDS.items()},
                                "api_keys": ["sk-r…0c", "sk-r…1f"]}
    reply = await a.ok("PUT", "/admin/plugins/hello/settings",
                       json={**read["settings"], "system": "be thorough"})
    assert not [s for s in SECRETS if s in json.dumps(reply)]
    assert on_disk(a)["plugins"]["hello"] == {"system": "be thorough", "token": HELLO_TOKEN,
                                              "hook": HOOK, **PLUGIN_OWN_WORDS,
                                              "api_keys": ROTATED_KEYS}
    # A key added to the list, the others sent back as previews in a new order.
    await a.ok("PUT", "/admin/plugins/hello/settings", json={
        **read["settings"], "api_keys": ["sk-r…1f", "sk-rotation-new-2a2b2c", "sk-r…0c"]})
    assert on_disk(a)["plugins"]["hello"]["api_keys"] == [
        ROTATED_KEYS[1], "sk-rotation-new-2a2b2c", ROTATED_KEYS[0]]
    await a.ok("PUT", "/admin/plugins/hello/settings", json={"system": "x", "token": "new-tok"})
    assert on_disk(a)["plugins"]["hello"] == {"system": "x", "token": "new-tok"}


NESTED = {"secrets": {"github": "ghp-nested-0a1b2c3d4e", "slack": "xoxb-nested-5f6a7b8c"},
          "credentials": {"user": "bob", "pass": "hunter2-nested-9d8c"},
          "api_keys": [{"label": "primary", "value": "val-nested-7e6d5c4b"}],
          "token": 918273645546372819}


async def test_secrets_nested_under_a_secret_name_are_masked_and_kept(masked_admin: Admin):
    """Under a secret's name only a string (or a list of strings) was masked:
    an object or a list of objects there ("secrets": {"github": …},
    "credentials": {"pass": …}), or a numeric token, was shown in full by
    every read of the plugin's settings and of the config, and by the write's
    own answer."""
    a = masked_admin
    nested = ("ghp-nested-0a1b2c3d4e", "xoxb-nested-5f6a7b8c", "hunter2-nested-9d8c",
              "val-nested-7e6d5c4b", "918273645546372819")
    reply = await a.ok("PUT", "/admin/plugins/hello/settings", json={"system": "s", **NESTED})
    read = await a.ok("GET", "/admin/plugins/hello/settings")
    for shown in (reply, read, await a.ok("GET", "/admin/config")):
        assert not [s for s in nested if s in json.dumps(shown)], shown
    assert read["settings"]["secrets"] == {"github": "ghp-…4e", "slack": "xoxb…8c"}
    assert read["settings"]["token"] == "9182…19"
    # The read sent back, one value changed, keeps every secret it only previewed.
    sent = {**read["settings"], "system": "t",
            "credentials": {**read["settings"]["credentials"], "user": "carol"}}
    await a.ok("PUT", "/admin/plugins/hello/settings", json=sent)
    assert on_disk(a)["plugins"]["hello"] == {
        "system": "t", **NESTED, "credentials": {"user": "carol", "pass": "hunter2-nested-9d8c"}}


async def test_an_upstream_url_with_credentials_is_refused_unquoted(masked_admin: Admin):
    a = masked_admin
    before = a.proxy.config_path.read_bytes()
    for url in (f"https://me:{URL_PASSWORD}@chat.example", f"ftp://me:{URL_PASSWORD}@x"):
        reply = await a.call("POST", "/admin/config/import", json={"upstream": {"base_url": url}})
        assert reply.status == 400 and reply.json()["field"] == "upstream.base_url"
        assert URL_PASSWORD.encode() not in reply.raw
    assert a.proxy.config_path.read_bytes() == before


QUERY_REDIS = "redis://127.0.0.1:6399/0?db=0&password=redis-query-pass-4d3c2b1a"
QUERY_HOOK = "https://hooks.example/notify?channel=ops&token=hook-query-token-8e7f6a5b"


async def test_a_credential_in_a_url_query_is_masked_and_kept(proxy_factory: ProxyFactory):
    proxy = await proxy_factory({"state": {"redis_url": QUERY_REDIS},
                                 "plugins": {"hello": {"system": "hi", "hook": QUERY_HOOK}}})
    secrets = ("redis-query-pass", "hook-query-token")
    async with aiohttp.ClientSession() as http:
        a = await admin_for(proxy, http)
        view = await a.ok("GET", "/admin/config")
        assert view["state"]["redis_url"] == "redis://127.0.0.1:6399/0?db=0&password=…"
        plugin = await a.ok("GET", "/admin/plugins/hello/settings")
        assert plugin["settings"]["hook"] == "https://hooks.example/notify?channel=ops&token=…"
        session = await a.call("GET", "/admin/ui/config", headers={
            "Cookie": f"ds2proxy_admin_{proxy.server.port}={a.token}"}, auth=False)
        assert session.status == 200 and b"password=\xe2\x80\xa6" in session.raw
        for raw in (json.dumps(view), json.dumps(plugin), session.raw.decode()):
            assert not [s for s in secrets if s in raw]
        await a.ok("POST", "/admin/config/import", json=view)
        await a.ok("PUT", "/admin/plugins/hello/settings", json=plugin["settings"])
    doc = json.loads(proxy.config_path.read_text())
    assert doc["state"]["redis_url"] == QUERY_REDIS
    assert doc["plugins"]["hello"]["hook"] == QUERY_HOOK
