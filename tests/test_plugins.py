"""The plugin loader: entry points, a broken plugin, shared routes, and a
third-party plugin installed as its own distribution (examples/hello-dialect)."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import aiohttp
import pytest
from aiohttp import web

import ds2proxy.plugin_api.loader as plugin_api
from ds2proxy.config_store import ConfigStore
from ds2proxy.core import Core
from ds2proxy.plugin_api import discover, load_plugins
from ds2proxy.testing import Scripted
from ds2proxy.testing.pytest_plugin import ProxyClient
from test_dashboard_forms import Browserless

FIRST_PARTY = {"openai", "claude", "gemini", "degpt", "lm"}


def test_first_party_plugins_are_entry_points():
    names = {ep.name for ep in discover()}
    assert FIRST_PARTY <= names
    assert "hello" in names, ("the example plugin is not installed: run the README's test "
                              "command (it installs ./examples/hello-dialect)")


def broken(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=plugin_api.GROUP)


def test_broken_plugins_are_reported_and_the_rest_load():
    app = web.Application()
    core = Core(ConfigStore({}))
    eps = [*discover(), broken("ghost", "no_such_module_anywhere:register"),
           broken("clash", "ds2proxy_plugins.openai:register")]
    infos = {i.name: i for i in load_plugins(app, core, eps)}
    assert "ModuleNotFoundError" in infos["ghost"].error and not infos["ghost"].routes
    assert "already served" in infos["clash"].error and not infos["clash"].routes
    assert all(infos[name].loaded for name in FIRST_PARTY)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource}
    assert {"/v1/chat/completions", "/v1/messages", "/lm/v2/chat/completions"} <= paths


def test_a_plugins_load_error_is_shown_without_the_secrets_it_quotes():
    """The error a broken plugin raised is shown on the plugins page and in
    the admin read as it was: a plugin quoting its own settings leaked them."""
    app = web.Application()
    core = Core(ConfigStore({}))
    [info] = load_plugins(app, core, [broken("leaky", "sample_plugins:register_leaky")])
    assert info.error.startswith("RuntimeError: hook https://hooks.example/in?token=")
    assert "tok-s3cr3t" not in info.error and "sk-leak-123" not in info.error


async def test_server_starts_with_a_broken_plugin(proxy_factory, monkeypatch):
    real = discover
    monkeypatch.setattr(plugin_api, "discover",
                        lambda group=plugin_api.GROUP: [*real(group),
                                                        broken("ghost", "nowhere:register")])
    proxy = await proxy_factory()
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/readyz") as resp:
            assert resp.status == 200
        async with http.get(proxy.url + "/admin/plugins",
                            headers={"Authorization": f"Bearer {proxy.admin_key}"}) as resp:
            raw = await resp.read()
    listed = json.loads(raw)
    items = listed["plugins"] if isinstance(listed, dict) else listed
    ghost = next(p for p in items if p["name"] == "ghost")
    assert "ModuleNotFoundError" in ghost["error"]


async def test_third_party_plugin_serves_its_route(proxy):
    proxy.fake.enqueue(Scripted(thinking="let me see", answer="Forty-two."),
                       Scripted(answer="streamed"))
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/hello/v1/ask", headers=proxy.headers(),
                             json={"model": "deepseek-reasoner", "question": "Answer?"}) as r:
            assert r.status == 200
            assert await r.json() == {"answer": "Forty-two.", "thinking": "let me see",
                                      "model": "deepseek-reasoner"}
        async with http.post(proxy.url + "/hello/v1/ask", headers=proxy.headers(),
                             json={"question": "Again?", "stream": True}) as r:
            body = (await r.read()).decode()
        async with http.post(proxy.url + "/hello/v1/ask", headers=proxy.headers(),
                             json={"question": ""}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "question"
    answers = [json.loads(line[6:])["text"] for line in body.splitlines()
               if line.startswith("data: {\"text\"")]
    assert "".join(answers) == "streamed"
    assert body.rstrip().endswith("event: done\ndata: {}")



async def test_no_plugin_route_comes_before_the_servers_own(proxy_factory):
    """A plugin serving GET /admin/config (mounted before the admin API)
    answered instead of it, and one on /healthz was listed as serving it but
    never ran; a pattern route still leaves the server's own paths alone."""
    proxy = await proxy_factory(plugins=["owner = sample_plugins:register_admin_path",
                                         "greedy = sample_plugins:register_catch_all"])
    async with ProxyClient.open(proxy) as client:
        listed = (await client.get("/admin/plugins", admin=True)).json()["plugins"]
        infos = {p["name"]: p for p in listed}
        assert "route GET /admin/config is the server's own path" in infos["owner"]["error"]
        assert infos["owner"]["routes"] == [] and infos["greedy"]["loaded"]
        config = await client.get("/admin/config", admin=True)
        assert config.status == 200 and "served_by" not in config.json(), config.text
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/anything/else")).json() == {"served_by": "plugin"}


def test_an_unmountable_route_or_an_exit_is_the_plugins_load_error():
    """A route aiohttp cannot mount raised from the mount, after every plugin
    was checked, and a plugin that exits on import stopped the whole server;
    a route declared twice (apart) was listed twice and its second never ran;
    a register written as a coroutine ran nothing yet showed as loaded;
    a settings check returning None refused its plugin with an AttributeError."""
    app = web.Application()
    core = Core(ConfigStore({}))
    infos = {i.name: i for i in load_plugins(app, core, [
        *discover(), broken("relative", "sample_plugins:register_unroutable"),
        broken("exiting", "sample_plugins:register_exiting"),
        broken("quiet", "sample_plugins:register_quiet_check"),
        broken("twice", "sample_plugins:register_twice"),
        broken("async", "sample_plugins:register_async")])}
    assert infos["async"].error.startswith("TypeError: sample_plugins:register_async is a "
                                           "coroutine function") and not infos["async"].routes
    assert "route GET 'relative/path' cannot be served" in infos["relative"].error
    assert infos["twice"].error == "ValueError: route GET /twice is declared twice"
    assert infos["twice"].routes == []
    assert infos["quiet"].loaded, infos["quiet"].error  # None: no problem found
    assert infos["exiting"].error == "SystemExit: the optional dependency foo is missing"
    assert all(infos[name].loaded for name in FIRST_PARTY)


@pytest.mark.parametrize("name, register, bad", [
    ("fragile", "register_fragile_check", "ten"),
    ("listing", "register_listing_check", 0),
])
async def test_a_settings_check_that_fails_refuses_the_write_naming_the_plugin(
        proxy_factory, name, register, bad):
    """A plugin's check that raised on a value of the wrong type, or that
    listed its problems (not {field: problem}), made every such config write
    a 500 'internal error: TypeError' / 'AttributeError'."""
    proxy = await proxy_factory(plugins=[f"{name} = sample_plugins:{register}"])
    async with ProxyClient.open(proxy) as client:
        refused = await client.put(f"/admin/plugins/{name}/settings", {"limit": bad},
                                   admin=True)
        assert refused.status == 400, refused.text
        assert refused.json()["field"] == f"plugins.{name}"
        assert "settings check failed (TypeError)" in refused.json()["detail"]
        assert "plugins" not in proxy.store.snapshot()
        accepted = await client.put(f"/admin/plugins/{name}/settings", {"limit": 3},
                                    admin=True)
        assert accepted.status == 200, accepted.text


async def test_settings_for_a_plugin_that_is_not_installed_are_named(proxy_factory, caplog):
    """plugins.olama (for ollama) was silently ignored: the keyless Ollama
    clients it meant to serve got 401s and nothing said why."""
    await proxy_factory({"plugins": {"olama": {"implied_key": "test-key"},
                                     "ollama": {}, "_note": "a comment"}})
    warned = [r.getMessage() for r in caplog.records if "no plugin of that name" in
              r.getMessage()]
    assert warned == ["config field 'plugins.olama': no plugin of that name is installed "
                      "(did you mean 'plugins.ollama'?); its settings are ignored"]


async def test_a_plugin_is_switched_off_by_its_enabled_setting(proxy_factory):
    """No plugin could be turned off: the first-party ones ship in the one
    distribution, so an operator who wanted /api/* free of the Ollama dialect
    had no way to do it. plugins.<name>.enabled: false leaves it unloaded."""
    proxy = await proxy_factory(
        {"plugins": {"ollama": {"enabled": False},
                     "lifecycle": {"enabled": True, "colour": "green"}}},
        plugins=["lifecycle = sample_plugins:register_lifecycle"])
    async with ProxyClient.open(proxy) as client:
        listed = {p["name"]: p for p in
                  (await client.get("/admin/plugins", admin=True)).json()["plugins"]}
        assert listed["ollama"]["disabled"] and not listed["ollama"]["loaded"]
        assert listed["ollama"]["routes"] == []
        assert "plugins.ollama.enabled is false" in listed["ollama"]["error"]
        assert (await client.get("/api/tags")).status == 404
        assert listed["lifecycle"]["loaded"] and not listed["lifecycle"]["disabled"]
        # The switch is the server's, not one of the plugin's own settings.
        assert (await client.get("/sample/settings")).json() == {"colour": "green"}
        refused = await client.put("/admin/plugins/lifecycle/settings",
                                   {"enabled": "no", "colour": "red"}, admin=True)
        assert refused.status == 400 and refused.json()["field"] == "plugins.lifecycle.enabled"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        dashboard = Browserless(proxy, http)
        await dashboard.log_in(proxy.admin_key)
        status, page, _ = await dashboard.get("/admin/ui/plugins")
    assert status == 200 and '<span class="badge">disabled</span>' in page
