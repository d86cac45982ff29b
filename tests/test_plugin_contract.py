"""The plugin contract beyond routes: what a plugin can reach, lifecycle
hooks, checked and live settings, registered model names, the API version."""

from __future__ import annotations

import logging
import socket

import pytest

import ds2proxy.plugin_api as plugin_api
import sample_plugins
from ds2proxy.plugin_api import API_VERSION, PluginContext
from ds2proxy.plugin_api import loader
from ds2proxy.plugin_api.loader import compatible
from ds2proxy.testing import Scripted
from ds2proxy.app import create_app, start_server
from ds2proxy.config_store import ConfigStore
from ds2proxy.testing.pytest_plugin import ProxyClient, base_config, entry_points_with

LIFECYCLE = "lifecycle = sample_plugins:register_lifecycle"
# What ``api`` offers, all of it: a new public attribute must be a deliberate
# change to the contract (and the docs), never a leak of the core.
CONTEXT_NAMES = {
    "admit_model", "authenticate", "check_settings", "claim_paths", "count_tokens", "default_model",
    "embeddings", "errors", "json_array", "models", "name", "ndjson", "note_usage",
    "on_settings", "on_shutdown", "on_startup", "prompt_tokens", "read_json",
    "register_alias", "register_model", "relay", "require_api", "resolve_model",
    "responses_ttl_seconds", "route", "settings", "shared_responses", "sse", "turn",
}


def test_the_context_offers_only_the_contract(ds2proxy_server):
    api = PluginContext(ds2proxy_server.core, "probe")
    assert {n for n in dir(api) if not n.startswith("_")} == CONTEXT_NAMES
    assert {n for n in dir(api.models) if not n.startswith("_")} == {
        "aliases", "configured_aliases", "listed", "native", "natives", "owner",
        "provider_models"}
    with pytest.raises(TypeError):
        api.settings["x"] = 1  # read-only


def test_public_names_are_listed_and_importable():
    assert "PluginContext" in plugin_api.__all__ and "API_VERSION" in plugin_api.__all__
    assert all(hasattr(plugin_api, name) for name in plugin_api.__all__)
    assert "Core" not in plugin_api.__all__ and not hasattr(plugin_api, "Core")


@pytest.mark.parametrize("required, ok", [
    ("1.0", True), (API_VERSION, True), ("1.99", False), ("2.0", False), ("0.9", False),
    ("one", False), ("1", False),
])
def test_api_versions(required, ok):
    assert compatible(required, "1.0") is ok


async def test_lifecycle_hooks_run_and_a_failing_one_is_logged(ds2proxy_factory, caplog):
    sample_plugins.EVENTS.clear()
    caplog.set_level(logging.ERROR, logger="ds2proxy.plugins")
    proxy = await ds2proxy_factory(plugins=[LIFECYCLE])
    assert sample_plugins.EVENTS == ["started"]
    failed = [r for r in caplog.records if "hook failed" in r.getMessage()]
    assert failed and "lifecycle" in failed[0].getMessage()
    await proxy.server.close()
    assert sample_plugins.EVENTS == ["started", "stopped"]


async def test_a_hook_that_hangs_or_exits_holds_neither_start_nor_shutdown(
        ds2proxy_factory, caplog, monkeypatch):
    """A start-up hook that never returned kept the server from ever
    listening, and one raising SystemExit took the whole start down."""
    sample_plugins.EVENTS.clear()
    monkeypatch.setattr(loader, "HOOK_SECONDS", 0.2)
    caplog.set_level(logging.ERROR, logger="ds2proxy.plugins")
    proxy = await ds2proxy_factory(plugins=["stuck = sample_plugins:register_stuck_hooks"])
    async with ProxyClient.open(proxy) as client:
        assert (await client.get("/readyz")).status == 200
    assert sample_plugins.EVENTS == ["stuck:started"]
    logged = [r.getMessage() for r in caplog.records]
    assert "plugin stuck: startup hook gave no answer in 0.2 s; going on without it" in logged
    assert ("plugin stuck: startup hook failed: SystemExit: the optional service is gone"
            in logged)
    await proxy.server.close()
    assert sample_plugins.EVENTS == ["stuck:started", "stuck:stopped"]
    assert "plugin stuck: shutdown hook gave no answer in 0.2 s; going on without it" in [
        r.getMessage() for r in caplog.records]


async def test_claimed_paths_answer_unmatched_requests_in_the_plugins_shape(
        ds2proxy_factory):
    proxy = await ds2proxy_factory(plugins=[LIFECYCLE])
    async with ProxyClient.open(proxy) as client:
        missing = await client.get("/sample/nothing")
        assert missing.status == 404 and missing.json()["type"] == "error"
        assert missing.json()["error"]["type"] == "not_found_error"
        wrong = await client.post("/sample/settings", {})
        assert wrong.status == 405 and wrong.headers["Allow"] == "GET"
        assert wrong.json()["error"]["type"] == "invalid_request_error"
        elsewhere = await client.get("/samplex")  # not below the claim: the default shape
        assert elsewhere.status == 404 and elsewhere.json()["error"]["code"] == "not_found"
        assert "type" not in elsewhere.json()


async def test_settings_are_checked_on_write_and_reach_the_plugin_live(ds2proxy_factory):
    sample_plugins.EVENTS.clear()
    proxy = await ds2proxy_factory({"plugins": {"lifecycle": {"colour": "red"}}},
                                   plugins=[LIFECYCLE])
    async with ProxyClient.open(proxy) as client:
        assert (await client.get("/sample/settings")).json() == {"colour": "red"}
        refused = await client.put("/admin/plugins/lifecycle/settings", {"colour": "blue"},
                                   admin=True)
        assert refused.status == 400
        assert refused.json()["field"] == "plugins.lifecycle.colour"
        assert "red or green" in refused.json()["detail"]
        assert (await client.get("/sample/settings")).json() == {"colour": "red"}
        accepted = await client.put("/admin/plugins/lifecycle/settings", {"colour": "green"},
                                    admin=True)
        assert accepted.status == 200, accepted.text
        assert (await client.get("/sample/settings")).json() == {"colour": "green"}
        missing = await client.put("/admin/plugins/nobody/settings", {}, admin=True)
        assert missing.status == 404
    assert sample_plugins.EVENTS == ["started", "settings:green"]
    assert proxy.store.snapshot()["plugins"]["lifecycle"] == {"colour": "green"}


STRICT = "strict = sample_plugins:register_strict_key"


async def test_a_plugins_check_quoting_a_secret_is_not_shown_to_the_admin(ds2proxy_factory):
    """A check that quoted the bad value back put the secret in the 400 body
    of every write, and in the plugins list when the config came that way."""
    secret = "pk-live-0123456789abcdef"
    loaded = await ds2proxy_factory({"plugins": {"strict": {"api_key": "sk-fine"}}},
                                    plugins=[STRICT])
    async with ProxyClient.open(loaded) as client:
        for method, path, body in (
                ("PUT", "/admin/plugins/strict/settings", {"api_key": secret}),
                ("POST", "/admin/config/import", {"plugins": {"strict": {"api_key": secret}}})):
            refused = await client.request(method, path, body, admin=True)
            assert refused.status == 400 and refused.json()["field"] == "plugins.strict.api_key"
            assert secret not in refused.text, refused.text
    refused_at_start = await ds2proxy_factory({"plugins": {"strict": {"api_key": secret}}},
                                              plugins=[STRICT])
    async with ProxyClient.open(refused_at_start) as client:
        listed = (await client.get("/admin/plugins", admin=True)).json()["plugins"]
    error = next(p for p in listed if p["name"] == "strict")["error"]
    assert "plugins.strict.api_key" in error and secret not in error


async def test_invalid_settings_at_start_are_a_load_error(ds2proxy_factory):
    proxy = await ds2proxy_factory({"plugins": {"lifecycle": {"colour": "blue"}}},
                                   plugins=[LIFECYCLE])
    async with ProxyClient.open(proxy) as client:
        listed = (await client.get("/admin/plugins", admin=True)).json()["plugins"]
        info = next(p for p in listed if p["name"] == "lifecycle")
        assert "plugins.lifecycle.colour" in info["error"] and info["routes"] == []
        assert (await client.get("/sample/settings")).status == 404


async def test_a_plugin_for_another_api_version_is_refused_and_leaves_nothing(
        ds2proxy_factory):
    proxy = await ds2proxy_factory(plugins=["future = sample_plugins:register_future"])
    async with ProxyClient.open(proxy) as client:
        listed = (await client.get("/admin/plugins", admin=True)).json()["plugins"]
        info = next(p for p in listed if p["name"] == "future")
        assert f"needs plugin API 2.0; this server provides {API_VERSION}" in info["error"]
        assert (await client.get("/future/thing")).status == 404
        models = (await client.get("/v1/models")).json()["data"]
        assert "future-model" not in {m["id"] for m in models}
        assert next(p for p in listed if p["name"] == "openai")["loaded"]


async def test_registered_models_are_listed_and_resolve(ds2proxy_factory):
    proxy = await ds2proxy_factory(plugins=["models = sample_plugins:register_models",
                                            "taken = sample_plugins:register_taken_model"])
    proxy.fake.enqueue(Scripted(answer="fast"), Scripted(answer="deep"))
    async with ProxyClient.open(proxy) as client:
        ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
        assert "sample-fast" in ids and "sample-thinker" not in ids
        assert "sample-other" not in ids  # its plugin was refused: nothing left behind
        assert (await client.get("/v1/models/sample-fast")).json()["id"] == "sample-fast"
        for model, answer in (("sample-fast", "fast"), ("sample-thinker", "deep")):
            reply = await client.post("/v1/chat/completions", {
                "model": model, "messages": [{"role": "user", "content": "hi"}]})
            assert reply.status == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"] == answer
        listed = (await client.get("/admin/plugins", admin=True)).json()["plugins"]
        taken = next(p for p in listed if p["name"] == "taken")
        assert "already taken" in taken["error"] and taken["routes"] == []
        assert (await client.get("/taken/thing")).status == 404
    sent = [c.body for c in proxy.fake.calls_to("chat/completion")]
    assert [b.get("thinking_enabled") for b in sent] == [False, True]


async def test_a_port_in_use_still_runs_the_shutdown_hooks(ds2proxy_fake_upstream):
    """start_server ran the start-up (plugin hooks, the state writer, the
    upstream session) and then failed to bind, leaving all of it open: a
    plugin's on_shutdown never ran for its on_startup."""
    sample_plugins.EVENTS.clear()
    store = ConfigStore(base_config(ds2proxy_fake_upstream))
    app = create_app(store, plugins=entry_points_with([LIFECYCLE]))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError):
            await start_server(app, "127.0.0.1", busy.getsockname()[1])
    assert sample_plugins.EVENTS == ["started", "stopped"]
