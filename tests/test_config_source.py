"""Where the config came from is told truthfully (file, environment, demo, or
none yet — the first admin change then creates ``config.json``), and a
misspelt field is reported with the closest known one, not ignored."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from admin_util import Admin, admin, admin_for, login  # noqa: F401  (fixture)
from conftest import ADMIN_KEY, REPO

from ds2proxy import cli
from ds2proxy.app import create_app, start_server
from ds2proxy.config_fields import unknown_field_messages
from ds2proxy.config_store import ConfigStore
from ds2proxy.keyring import secret_of

BANNERS = {"none": "No config file exists yet", "environment": "DS2PROXY_CONFIG_JSON",
           "demo": "Demo mode"}


async def dashboard_home(url: str, http: aiohttp.ClientSession) -> str:
    """The overview page as a logged-in admin sees it."""
    async with http.get(f"{url}/admin/ui/login") as resp:
        page = await resp.text()
    token = page.split('name="login_token" value="', 1)[1].split('"', 1)[0]
    async with http.post(f"{url}/admin/ui/login", data={
            "login_token": token, "admin_key": ADMIN_KEY, "next": "/admin/"}) as resp:
        assert resp.status == 200
        return await resp.text()


@pytest.fixture
async def served() -> AsyncIterator[list]:
    """Servers started by a test, closed after it."""
    servers: list = []
    yield servers
    for server in servers:
        await server.close()


def only_banner(page: str, source: str) -> None:
    assert BANNERS[source] in page
    for other, text in BANNERS.items():
        if other != source:
            assert text not in page, f"{source} config shown as {other}"


async def test_no_config_runs_empty_says_so_and_first_change_creates_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list) -> None:
    monkeypatch.chdir(tmp_path)
    store = ConfigStore.from_sources(None, {})
    assert store.source == "none" and "no config file" in store.describe()
    server = await start_server(create_app(store, admin_key=ADMIN_KEY))
    served.append(server)
    assert not (tmp_path / "config.json").exists()  # starting alone writes nothing
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        only_banner(await dashboard_home(server.url, http), "none")
        async with http.post(f"{server.url}/admin/login", json={"admin_key": ADMIN_KEY}) as r:
            token = (await r.json())["token"]
        async with http.post(f"{server.url}/admin/keys", json={"key": "sk-first-key"},
                             headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
        written = json.loads((tmp_path / "config.json").read_text())
        assert [secret_of(k) for k in written["keys"]] == ["sk-first-key"]
        assert written["admin"]["jwt_secret"]  # sessions survive a restart from now on
        assert store.source == "file"
        async with http.get(f"{server.url}/admin/") as resp:
            page = await resp.text()
        assert not any(text in page for text in BANNERS.values())


async def test_environment_and_demo_configs_are_named_as_such(served: list) -> None:
    env_store = ConfigStore.from_sources(None, {"DS2PROXY_CONFIG_JSON": '{"keys": ["k"]}'})
    demo_store, fake = await cli._demo_store()
    try:
        for store, source in ((env_store, "environment"), (demo_store, "demo")):
            assert store.source == source
            server = await start_server(create_app(store, admin_key=ADMIN_KEY))
            served.append(server)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                only_banner(await dashboard_home(server.url, http), source)
    finally:
        await fake.close()


async def test_settings_read_names_the_source(admin: Admin) -> None:
    view = await admin.ok("GET", "/admin/settings")
    assert view["config_source"] == "file" and view["env_backed"] is False


# -- misspelt fields ----------------------------------------------------------------------


def test_misspelt_fields_are_warned_at_load_with_a_suggestion(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "kyes": ["k"], "upstream": {"timout_seconds": 5}, "_comment": "ignored",
        "accounts": [{"email": "a@example.com", "pasword": "p", "token": "t"}],
        "plugins": {"anything": {"goes": 1}}}))
    with caplog.at_level(logging.WARNING, logger="ds2proxy.config"):
        ConfigStore.from_sources(str(path), {})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert all(line.startswith(f"{path}: unknown config field") for line in lines)
    joined = "\n".join(lines)
    assert "'kyes' (did you mean 'keys'?)" in joined
    assert "'upstream.timout_seconds' (did you mean 'upstream.timeout_seconds'?)" in joined
    assert "'accounts[0].pasword' (did you mean 'accounts[0].password'?)" in joined


async def test_post_config_refuses_unknown_fields_with_a_suggestion(admin: Admin) -> None:
    before = admin.proxy.store.snapshot()
    reply = await admin.call("POST", "/admin/config",
                             json={"kyes": ["sk-x"], "model_alias": {}, "runtime": {}})
    assert reply.status == 400
    errors = reply.json()["errors"]
    assert errors["kyes"] == "unknown field (did you mean 'keys'?)"
    assert errors["model_alias"] == "unknown field (did you mean 'model_aliases'?)"
    assert "cannot be set here" in errors["runtime"]
    assert admin.proxy.store.snapshot() == before


async def test_put_settings_names_every_unknown_setting(admin: Admin) -> None:
    reply = await admin.call("PUT", "/admin/settings", json={
        "runtime": {"acount_max_inflight": 3}, "dev_capture": {"enabled": True}})
    assert reply.status == 400
    errors = reply.json()["errors"]
    assert "did you mean 'runtime.account_max_inflight'?" in errors["runtime.acount_max_inflight"]
    assert "did you mean 'dev_captures'?" in errors["dev_capture"]


async def test_import_warns_about_unknown_fields_and_keeps_them(admin: Admin) -> None:
    reply = await admin.ok("POST", "/admin/config/import",
                           json={"upstream": {"timout_seconds": 5}, "keys": ["sk-imported-1"]})
    assert reply["warnings"] == ["unknown config field 'upstream.timout_seconds' (did you mean "
                                 "'upstream.timeout_seconds'?); it is kept but ignored"]
    written = json.loads(admin.proxy.config_path.read_text())
    assert written["upstream"]["timout_seconds"] == 5


# -- the example and the command line ----------------------------------------------------------


def test_example_config_leaves_the_fake_embeddings_off() -> None:
    example = json.loads((REPO / "config.example.json").read_text())
    assert example["embeddings"]["provider"] in ("", "none")


@pytest.mark.parametrize("argv,env", [(["--log-level", "verbose"], {}),
                                      ([], {"DS2PROXY_LOG_LEVEL": "loud"})])
def test_a_bad_log_level_is_a_usage_error_listing_the_levels(
        argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "DEBUG" in err and "WARNING" in err and "Traceback" not in err
    assert cli.parse_args(["--log-level", "debug"]).log_level == "DEBUG"


def test_a_document_of_junk_fields_gets_a_bounded_report() -> None:
    doc = {f"junk-{n}-" + "x" * 5000: n for n in range(500)}
    messages = unknown_field_messages(doc)
    assert len(messages) == 21 and messages[-1] == "and 480 more unknown config fields"
    assert max(len(m) for m in messages) < 300


def test_every_field_of_the_example_config_is_known() -> None:
    """A section added to the example (server, usage, metrics …) must be
    known to the misspelling check, or every start would warn about it."""
    from ds2proxy.config_fields import unknown_fields
    example = json.loads((REPO / "config.example.json").read_text())
    assert unknown_fields(example) == []


def test_the_example_config_shows_every_setting_and_loads_as_written() -> None:
    """upstream.keepalive_connections was left out of the example, so an
    operator copying it never learnt the setting existed."""
    from ds2proxy.config import Config, parse_config
    from ds2proxy.settings_schema import leaves

    example = json.loads((REPO / "config.example.json").read_text())
    parse_config(example)
    missing = []
    for leaf in leaves(Config):
        node: object = example
        for part in leaf.path.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError:
            missing.append(leaf.path)
    assert missing == []


async def test_an_admin_session_longer_than_a_login_may_ask_is_refused(admin: Admin) -> None:
    """admin.jwt_expire_hours had no ceiling although a login may ask for 720
    hours at most: a huge value was saved, and every admin login then failed
    with a 500 (an expiry beyond 64 bits)."""
    reply = await admin.call("PUT", "/admin/settings",
                             json={"admin": {"jwt_expire_hours": 1e300}})
    assert reply.status == 400, reply.raw
    assert "between 0.01 and 720" in reply.json()["errors"]["admin.jwt_expire_hours"]
    relogin = await login(admin.http, admin.proxy.url, admin.proxy.admin_key)
    assert relogin.status == 200, relogin.raw
    assert relogin.json()["expires_in"] == 24 * 3600
    await admin.ok("PUT", "/admin/settings", json={"admin": {"jwt_expire_hours": 720}})


async def test_a_key_listed_twice_is_named_at_load_and_on_import(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, admin: Admin) -> None:
    """A keys entry repeating an earlier entry's key (a copied entry whose
    secret was not changed) was dropped without a word: its name, models and
    limits never applied. It is still ignored, now with a warning that names
    both entries and never the key."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"keys": [
        {"key": "sk-twice-0001", "name": "alice"}, "sk-other-0002",
        {"key": "sk-twice-0001", "name": "bob", "limits": {"rpm": 1}}]}))
    with caplog.at_level(logging.WARNING, logger="ds2proxy.config"):
        store = ConfigStore.from_sources(str(path), {})
    assert [k.name for k in store.config.keys] == ["alice", "key-0002"]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"{path}: keys[2] has the same key as keys[0]; only the first is used"]
    reply = await admin.ok("POST", "/admin/config/import",
                           json={"keys": ["sk-imported-7", "sk-imported-7"]})
    assert reply["warnings"] == ["keys[1] has the same key as keys[0]; only the first is used"]
    assert "sk-twice" not in caplog.text and "sk-imported" not in json.dumps(reply)
