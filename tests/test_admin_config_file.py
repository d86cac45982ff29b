"""The config file as the admin's writes meet it: a file the server may not
write (a read-only mount, a full disk), a file that is a symbolic link, and
what the written file lets others read."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import aiohttp
import pytest
from admin_util import admin_for, wait_until
from conftest import ADMIN_KEY, ProxyFactory, base_config, shared_config
from test_dashboard_forms import Browserless

from ds2proxy import config_store
from ds2proxy.app import create_app, start_server
from ds2proxy.config_store import ConfigStore
from ds2proxy.keyring import secret_of
from ds2proxy.testing import FakeDeepSeek
from ds2proxy.testing.clients import openai_client
from ds2proxy.testing.redis_server import RedisServer


def _read_only(path: Path, data: dict) -> None:
    raise OSError(errno.EROFS, "Read-only file system", str(path))


async def test_a_config_the_server_cannot_write_still_starts_with_working_sessions(
        proxy_factory: ProxyFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first start stores the session-signing secret in the config; on a
    read-only mount that write failed and the server did not start at all."""
    monkeypatch.setattr(config_store, "atomic_write_json", _read_only)
    proxy = await proxy_factory()
    assert "jwt_secret" not in proxy.config_path.read_text()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        admin = await admin_for(proxy, http)
        assert (await admin.ok("GET", "/admin/verify"))["valid"] is True
        page = Browserless(proxy, http)
        await page.log_in(ADMIN_KEY)
        status, _, _ = await page.get("/admin/ui/settings")
        assert status == 200
        refused = await admin.call("POST", "/admin/keys", json={"key": "sk-new-key-0001"})
        assert refused.status == 503 and "Read-only file system" in refused.json()["detail"]
    # An account's login stores its token in the config too: a file that cannot
    # take it failed the request that logged in, though the token was good.
    reply = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert any(account.token for account in proxy.core.pool.accounts())


def _disk_full(path: Path, data: dict) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


async def test_a_password_the_config_cannot_keep_is_a_503_and_the_old_one_still_works(
        proxy_factory: ProxyFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The password change wrote past the admin writer's error mapping: a
    full disk was a 500 'internal error: OSError' (the API) or aiohttp's bare
    500 page (the dashboard form)."""
    proxy = await proxy_factory()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        admin = await admin_for(proxy, http)
        page = Browserless(proxy, http)
        await page.log_in(ADMIN_KEY)
        monkeypatch.setattr(config_store, "atomic_write_json", _disk_full)
        reply = await admin.call("POST", "/admin/settings/password",
                                 json={"new_password": "a-new-password"})
        assert reply.status == 503, reply.raw
        assert reply.json()["detail"].startswith("the config could not be saved (No space")
        status, _, resp = await page.post("/admin/ui/settings/password", {
            "current_password": ADMIN_KEY, "new_password": "a-new-password",
            "confirm_password": "a-new-password"})
        assert status == 303 and resp.headers["Location"] == "/admin/ui/settings"
        _, settings_page, _ = await page.get("/admin/ui/settings")
        assert "could not be saved (No space left on device)" in settings_page
        monkeypatch.undo()
        assert (await admin.ok("GET", "/admin/verify"))["valid"] is True
        assert (await admin_for(proxy, http)).token  # the old key still opens the admin
        await admin.ok("POST", "/admin/settings/password", json={"new_password": "a-new-password"})


async def _add_key_through(link: Path, key: str) -> None:
    """Start a server on the config at ``link``, add ``key`` over HTTP, stop."""
    server = await start_server(create_app(ConfigStore.from_sources(str(link), {}),
                                           admin_key=ADMIN_KEY))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/admin/keys", json={"key": key},
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as resp:
                assert resp.status == 200, await resp.text()
    finally:
        await server.close()


async def test_a_symlinked_config_is_written_through_and_stays_a_link(
        fake_upstream: FakeDeepSeek, tmp_path: Path) -> None:
    """A config kept elsewhere and linked in (a dotfiles folder, a mounted
    volume) had its link replaced by a plain file at the first start, so the
    file the link named never saw another change."""
    target = tmp_path / "kept" / "ds2proxy.json"
    target.parent.mkdir()
    target.write_text(json.dumps(base_config(fake_upstream)))
    link = tmp_path / "config.json"
    link.symlink_to(target)
    await _add_key_through(link, "sk-through-the-link-1")
    assert link.is_symlink() and link.resolve() == target
    assert "sk-through-the-link-1" in [secret_of(k) for k in json.loads(target.read_text())["keys"]]
    assert "jwt_secret" in json.loads(target.read_text())["admin"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".config.json.")]
    await _add_key_through(link, "sk-through-the-link-2")  # a restart keeps both
    keys = [secret_of(k) for k in json.loads(target.read_text())["keys"]]
    assert {"sk-through-the-link-1", "sk-through-the-link-2"} <= set(keys)
    assert link.is_symlink()


async def test_a_local_copy_that_cannot_be_written_does_not_split_the_shared_config(
        proxy_factory: ProxyFactory, fake_upstream: FakeDeepSeek, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the config shared on Redis the file is each instance's local copy.
    A change committed to the cluster by an instance whose disk is full was
    answered 503 'nothing was changed' and left out of that instance's memory
    (the other instance had it); and an instance that could not write a
    change it adopted never applied it at all."""
    shared = shared_config(fake_upstream, redis_server)
    full, other = await proxy_factory(shared), await proxy_factory(shared)
    on_full_disk = {full.config_path.resolve()}
    real_write = config_store.atomic_write_json

    def write(path: Path, data: dict) -> None:
        if path.resolve() in on_full_disk:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(config_store, "atomic_write_json", write)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(full, http)
        await admin.ok("POST", "/admin/keys", json={"key": "sk-made-on-the-full-disk"})
        assert "sk-made-on-the-full-disk" in full.core.config.key_secrets
        await wait_until(lambda: "sk-made-on-the-full-disk" in other.core.config.key_secrets)
        elsewhere = await admin_for(other, http)
        await elsewhere.ok("POST", "/admin/keys", json={"key": "sk-adopted-by-the-full-disk"})
        await wait_until(lambda: "sk-adopted-by-the-full-disk" in full.core.config.key_secrets)
    assert "sk-made-on-the-full-disk" not in full.config_path.read_text()


async def test_a_folder_that_cannot_be_synced_leaves_file_and_memory_alike(
        proxy_factory: ProxyFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some file systems refuse to fsync a folder (EINVAL). That came after the
    rename, so the change was in the file but the admin was told 503 'nothing
    was changed' and memory kept the old config, until a restart applied it."""
    proxy = await proxy_factory()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(config_store.os, "fsync", fsync)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        await admin.ok("POST", "/admin/keys", json={"key": "sk-in-an-unsyncable-folder"})
    assert "sk-in-an-unsyncable-folder" in proxy.core.config.key_secrets
    assert "sk-in-an-unsyncable-folder" in proxy.config_path.read_text()


async def test_a_hand_edit_of_the_running_config_survives_the_next_admin_change(
        proxy_factory: ProxyFactory) -> None:
    """The server wrote its memory over the file: a key or setting an operator
    added with an editor while it ran vanished at the next admin change (or
    refreshed token), without a word."""
    proxy = await proxy_factory()
    edited = json.loads(proxy.config_path.read_text())
    edited["keys"].append("sk-added-in-an-editor")
    edited["model_aliases"] = {"team": "deepseek-chat"}
    proxy.config_path.write_text(json.dumps(edited, indent=2))
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        await admin.ok("POST", "/admin/keys", json={"key": "sk-added-by-the-admin"})
    doc = json.loads(proxy.config_path.read_text())
    keys = [secret_of(k) for k in doc["keys"]]
    assert {"sk-added-in-an-editor", "sk-added-by-the-admin"} <= set(keys)
    assert doc["model_aliases"] == {"team": "deepseek-chat"}
    assert {"sk-added-in-an-editor", "sk-added-by-the-admin"} <= set(
        proxy.core.config.key_secrets)


async def test_a_broken_hand_edit_is_kept_aside_not_lost(proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory()
    broken = proxy.config_path.read_text().rstrip().rstrip("}") + ', "keys": ["sk-half-typed'
    proxy.config_path.write_text(broken)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        await admin.ok("POST", "/admin/keys", json={"key": "sk-added-by-the-admin"})
    assert "sk-added-by-the-admin" in proxy.config_path.read_text()
    kept = list(proxy.config_path.parent.glob(f"{proxy.config_path.name}.outside-edit-*"))
    assert len(kept) == 1 and kept[0].read_text() == broken
    assert stat.S_IMODE(kept[0].stat().st_mode) == 0o600


def test_two_broken_edits_in_one_second_are_both_kept(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{ first broken edit")
    first = config_store.keep_aside(config)
    config.write_text("{ second broken edit")
    second = config_store.keep_aside(config)
    assert first != second
    assert (first.read_text(), second.read_text()) == ("{ first broken edit",
                                                       "{ second broken edit")


def _started_config(fake: FakeDeepSeek, path: Path, mode: int) -> None:
    """A config whose session secret is already stored (so starting writes
    nothing), created with ``mode``."""
    doc = base_config(fake) | {"admin": {"jwt_secret": "s" * 64},
                               "accounts": [{"email": "x@example.com",
                                             "password": "pw-never-logged-77"}]}
    path.write_text(json.dumps(doc))
    os.chmod(path, mode)


@pytest.mark.parametrize("linked", [False, True])
async def test_a_config_others_may_read_is_named_at_start_and_private_after_a_write(
        fake_upstream: FakeDeepSeek, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        linked: bool) -> None:
    """A config created world-readable (``echo > config.json`` under umask
    022) stayed 0644 through every write, account passwords and keys in it,
    and nothing said so."""
    target = tmp_path / "kept" / "config.json"
    target.parent.mkdir()
    _started_config(fake_upstream, target, 0o644)
    path = target
    if linked:
        path = tmp_path / "config.json"
        path.symlink_to(target)
    caplog.set_level("WARNING")
    server = await start_server(create_app(ConfigStore.from_sources(str(path), {}),
                                           admin_key=ADMIN_KEY))
    try:
        warned = [r.getMessage() for r in caplog.records if "not private" in r.getMessage()]
        assert len(warned) == 1 and "mode 0644" in warned[0] and str(path) in warned[0]
        assert "pw-never-logged-77" not in caplog.text and "s" * 64 not in caplog.text
        assert stat.S_IMODE(target.stat().st_mode) == 0o644  # starting wrote nothing
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/admin/keys", json={"key": "sk-made-private-1"},
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as resp:
                assert resp.status == 200, await resp.text()
    finally:
        await server.close()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert path.is_symlink() == linked
    assert "sk-made-private-1" in target.read_text()


async def test_a_private_config_starts_without_a_warning(
        fake_upstream: FakeDeepSeek, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    _started_config(fake_upstream, path, 0o600)
    caplog.set_level("WARNING")
    server = await start_server(create_app(ConfigStore.from_sources(str(path), {}),
                                           admin_key=ADMIN_KEY))
    await server.close()
    assert "not private" not in caplog.text


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a file to another user needs root")
async def test_a_write_keeps_the_config_files_owner(proxy_factory: ProxyFactory) -> None:
    """A server run as root replaced an operator's config with a file of its own."""
    proxy = await proxy_factory()
    os.chown(proxy.config_path, 65534, 65534)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        await admin.ok("POST", "/admin/keys", json={"key": "sk-kept-owner-1"})
    kept = proxy.config_path.stat()
    assert (kept.st_uid, kept.st_gid, stat.S_IMODE(kept.st_mode)) == (65534, 65534, 0o600)
