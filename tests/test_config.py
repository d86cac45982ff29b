"""Config loading, validation (errors name the field) and atomic writes."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from admin_util import admin, wait_until  # noqa: F401  (fixture)

from ds2proxy.config import ConfigError, parse_config
from ds2proxy.config_store import ConfigStore, atomic_write_json
from ds2proxy.testing.pytest_plugin import ProxyClient


def test_defaults_from_empty_document():
    cfg = parse_config({})
    assert cfg.key_secrets == ()
    assert cfg.runtime.account_max_inflight == 2
    assert cfg.upstream.base_url == "https://chat.deepseek.com"
    assert cfg.responses.store_ttl_seconds == 900


@pytest.mark.parametrize("doc, field", [
    ({"keys": "sk"}, "keys"),
    ({"keys": [""]}, "keys[0]"),
    ({"accounts": [{"email": "a@b.c"}]}, "accounts[0].password"),
    ({"accounts": [{}]}, "accounts[0]"),
    ({"runtime": {"account_max_inflight": 0}}, "runtime.account_max_inflight"),
    ({"runtime": {"account_max_inflight": True}}, "runtime.account_max_inflight"),
    ({"upstream": {"base_url": "ftp://x"}}, "upstream.base_url"),
    ({"toolcall": {"early_emit_confidence": "maybe"}}, "toolcall.early_emit_confidence"),
    ({"model_aliases": {"a": 1}}, "model_aliases.a"),
])
def test_validation_names_the_field(doc, field):
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.field == field
    assert field in str(info.value)


def test_duplicate_accounts_refused():
    with pytest.raises(ConfigError, match="duplicate"):
        parse_config({"accounts": [{"mobile": "13800138000", "password": "x"},
                                   {"mobile": "+86 138 0013 8000", "password": "y"}]})


def test_env_json_raw_and_base64(tmp_path):
    doc = {"keys": ["k1"], "upstream": {"base_url": "http://127.0.0.1:9"}}
    raw = json.dumps(doc)
    for value in (raw, base64.b64encode(raw.encode()).decode()):
        store = ConfigStore.from_sources(None, {"DS2PROXY_CONFIG_JSON": value})
        assert store.config.key_secrets == ("k1",)
    legacy = ConfigStore.from_sources(None, {"DS2API_CONFIG_JSON": raw})
    assert legacy.config.upstream.base_url == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match="DS2PROXY_CONFIG_JSON"):
        ConfigStore.from_sources(None, {"DS2PROXY_CONFIG_JSON": "not-json-not-b64!"})


def test_config_path_from_env(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"keys": ["from-file"]}))
    assert ConfigStore.from_sources(None, {"DS2PROXY_CONFIG": str(path)}).config.key_secrets == (
        "from-file",)
    with pytest.raises(ConfigError, match="does not exist"):
        ConfigStore.from_sources(str(tmp_path / "missing.json"), {})


async def test_a_config_file_with_a_byte_order_mark_loads_and_saves(tmp_path):
    """Notepad and other Windows editors save UTF-8 with a BOM; orjson refuses
    it, so such a config.json stopped the server while the same text in
    DS2PROXY_CONFIG_JSON loaded."""
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"keys": ["k-bom"]}).encode())
    store = ConfigStore.from_sources(str(path), {})
    assert store.config.key_secrets == ("k-bom",)
    await store.update(lambda doc: doc.update(models={"default": "deepseek-reasoner"}))
    assert json.loads(path.read_bytes())["keys"][0]["key"] == "k-bom"


def test_blank_config_variables_count_as_unset(tmp_path, monkeypatch):
    """DS2PROXY_CONFIG_JSON= (a compose file leaving it empty) was read as an
    empty JSON document and stopped the start; DS2PROXY_CONFIG=' ' named a
    file called ' '. Blank is unset: ./config.json is used."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"keys": ["k-here"]}))
    store = ConfigStore.from_sources(None, {"DS2PROXY_CONFIG_JSON": " ",
                                            "DS2API_CONFIG_JSON": "", "DS2PROXY_CONFIG": " "})
    assert store.source == "file" and store.config.key_secrets == ("k-here",)


async def test_update_keeps_unknown_fields_and_is_atomic(tmp_path):
    path = tmp_path / "config.json"
    doc = {"keys": ["a"], "future_field": {"x": 1},
           "accounts": [{"email": "u@example.com", "password": "p"}]}
    path.write_text(json.dumps(doc))
    store = ConfigStore.from_sources(str(path), {})
    seen = []
    store.subscribe(lambda cfg: seen.append(cfg.key_secrets))

    def add_token(d):
        d["accounts"][0]["token"] = "tok"

    await store.update(add_token)
    written = json.loads(path.read_text())
    assert written["future_field"] == {"x": 1}
    assert written["accounts"][0] == {"email": "u@example.com", "password": "p", "token": "tok"}
    assert seen == [("a",)]
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp files left


async def test_invalid_update_changes_nothing(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"keys": ["a"]}))
    store = ConfigStore.from_sources(str(path), {})
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        await store.update(lambda d: d.update(runtime={"account_max_inflight": -1}))
    assert path.read_bytes() == before
    assert store.config.key_secrets == ("a",)


async def test_concurrent_updates_never_lose_each_other(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"keys": []}))
    store = ConfigStore.from_sources(str(path), {})

    async def add(i):
        await store.update(lambda d: d["keys"].append(f"k{i}"))

    await asyncio.gather(*(add(i) for i in range(25)))
    assert sorted(k["key"] for k in json.loads(path.read_text())["keys"]) == sorted(
        f"k{i}" for i in range(25))


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"keys": ["old"]}')
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"keys": ["old"]}
    assert len(list(tmp_path.iterdir())) == 1


async def test_a_usage_db_path_that_cannot_be_a_database_is_warned_not_fatal(
        proxy_factory, tmp_path, caplog):
    """usage.db_path naming a folder (or a file that is no database) stopped
    the start with a sqlite3 traceback, while the health records on the same
    file fall back to memory with a warning; usage now does the same."""
    folder = tmp_path / "not-a-db"
    folder.mkdir()
    proxy = await proxy_factory({"usage": {"db_path": str(folder)}})
    assert f"state file {folder} cannot be used for usage" in caplog.text
    async with ProxyClient.open(proxy) as client:
        reply = await client.post("/v1/chat/completions", {
            "model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status == 200, reply.text
    await wait_until(lambda: proxy.core.usage.recorded == 1)
    await proxy.core.usage.store.flush()
    rows, total = await proxy.core.usage.store.requests({}, 10, 0)
    assert total == 1 and rows[0]["status"] == 200


async def test_a_symlinked_config_is_written_where_it_points(tmp_path):
    """The write renamed its temp file over the link: config.json became a
    plain copy, and the file it pointed to (in a dotfiles or secrets folder)
    kept the old settings and never saw a refreshed token again."""
    real = tmp_path / "secrets" / "ds2proxy.json"
    real.parent.mkdir()
    real.write_text(json.dumps({"keys": ["k-link"]}))
    link = tmp_path / "config.json"
    link.symlink_to(real)
    store = ConfigStore.from_sources(str(link), {})
    await store.update(lambda doc: doc.update(models={"default": "deepseek-reasoner"}))
    assert link.is_symlink() and link.resolve() == real
    assert json.loads(real.read_text())["models"] == {"default": "deepseek-reasoner"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "secrets"]
    assert [p.name for p in real.parent.iterdir()] == ["ds2proxy.json"]


async def test_values_sent_as_upstream_headers_refuse_control_characters(proxy, admin):
    """A line break in upstream.user_agent (or the client version, platform,
    locale, or an account's token) was saved, and then every turn was a 500
    'internal error: ValueError' from the HTTP client's header check."""
    for field in ("user_agent", "client_version", "platform", "locale"):
        reply = await admin.call("POST", "/admin/config/import",
                                 json={"upstream": {field: "x\r\nX-Injected: 1"}})
        assert reply.status == 400, reply.raw
        assert reply.json()["field"] == f"upstream.{field}"
        assert "must not contain control characters" in reply.json()["detail"]
    with pytest.raises(ConfigError) as caught:
        parse_config({"accounts": [{"token": "tok-SECRET\r\nX-Injected: 1"}]})
    assert caught.value.field == "accounts[0].token" and "SECRET" not in str(caught.value)
    async with ProxyClient.open(proxy) as client:
        reply = await client.post("/v1/chat/completions", {
            "model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status == 200, reply.text
