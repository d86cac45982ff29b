"""No lost admin write: a write whose client vanishes still completes in
file and memory together, writes are serialised end to end, and a write
answered 200 is on disk, also across ``kill -9``; a whole-list write sent
with the ETag of a read that another change has overtaken is a 412.

The aborting client resets its connection (SO_LINGER 0) 0–3 ms after
sending, which lands inside the handler's file write; meanwhile a normal
write must be on disk the moment it is acknowledged and stay there.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import signal
import socket
import struct
import sys
from pathlib import Path

import aiohttp
import pytest
from admin_util import Admin, admin, login  # noqa: F401  (fixture)
from conftest import Proxy

from ds2proxy import config_store
from ds2proxy.admin.api_usage import UsageAPI
from ds2proxy.errors import NotFound
from ds2proxy.keyring import secret_of

ABORT_RACE_ITERATIONS = 300
KILL_ROUNDS = 3
ACKS_BEFORE_KILL = 15


def _raw_request(port: int, method: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def send_and_reset(port: int, request: bytes, delay: float) -> None:
    """Send ``request``, wait ``delay`` seconds, then reset the connection (RST)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.write(request)
    await writer.drain()
    await asyncio.sleep(delay)
    writer.transport.abort()


def keys_on_disk(path: Path) -> list[str]:
    """The key secrets in the file (entries are named objects once written)."""
    return [secret_of(k) for k in json.loads(path.read_text())["keys"]]


async def test_aborted_writes_never_undo_acknowledged_ones(admin: Admin) -> None:
    proxy: Proxy = admin.proxy
    port = int(proxy.url.rsplit(":", 1)[1])
    rng = random.Random(11)
    for i in range(ABORT_RACE_ITERATIONS):
        if i % 2:  # an aborted delete of the key the previous iteration added
            victim = f"sk-normal-{i - 1}"
            aborted = _raw_request(port, "DELETE", f"/admin/keys/{victim}", admin.token)
        else:
            aborted = _raw_request(port, "POST", "/admin/keys", admin.token,
                                   json.dumps({"key": f"sk-aborted-{i}"}).encode())
        normal_key = f"sk-normal-{i}"
        _, reply = await asyncio.gather(
            send_and_reset(port, aborted, rng.uniform(0, 0.003)),
            admin.call("POST", "/admin/keys", json={"key": normal_key}))
        assert reply.status == 200, reply.raw
        assert normal_key in keys_on_disk(proxy.config_path), f"iteration {i}: ack not on disk"
        await proxy.store.settled()
        on_disk = keys_on_disk(proxy.config_path)
        assert normal_key in on_disk, f"iteration {i}: an older write undid an acknowledged one"
        assert on_disk == list(proxy.core.config.key_secrets), \
            f"iteration {i}: disk and memory differ"
    live = await admin.ok("GET", "/admin/config")
    assert len(live["keys"]) == len(keys_on_disk(proxy.config_path))


async def test_token_refresh_goes_through_the_serialised_writer(admin: Admin) -> None:
    """A login's token write and admin writes interleave without losing either."""
    proxy = admin.proxy
    state = proxy.core.pool.find("alice@example.com")
    assert state is not None
    adds = [admin.call("POST", "/admin/keys", json={"key": f"sk-during-login-{n}"})
            for n in range(10)]
    token, *replies = await asyncio.gather(
        proxy.core.keeper.refresh(state, stale_token=""), *adds)
    assert all(r.status == 200 for r in replies)
    doc = json.loads(proxy.config_path.read_text())
    alice = next(a for a in doc["accounts"] if a.get("email") == "alice@example.com")
    assert alice["token"] == token
    assert {f"sk-during-login-{n}" for n in range(10)} <= {secret_of(k) for k in doc["keys"]}


async def test_a_token_write_whose_request_is_cancelled_still_lands(admin: Admin) -> None:
    """The turn that logged in goes away (client gone) while its token is
    being saved: the file still ends up with the token memory holds."""
    proxy = admin.proxy
    state = proxy.core.pool.find("bob@example.com")
    assert state is not None
    refresh = asyncio.create_task(proxy.core.keeper.refresh(state, stale_token=""))
    # Cancel the turn from inside its own config write, while that write is in flight.
    proxy.store.subscribe(lambda cfg: refresh.cancel())
    with pytest.raises(asyncio.CancelledError):
        await refresh
    await proxy.store.settled()
    doc = json.loads(proxy.config_path.read_text())
    bob = next(a for a in doc["accounts"] if a.get("email") == "bob@example.com")
    assert state.token and bob["token"] == state.token
    assert proxy.store.snapshot()["accounts"][1]["token"] == state.token


# -- kill -9 with writes in flight ----------------------------------------------------------


async def _start_server(config: Path, admin_key: str) -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, "DS2PROXY_ADMIN_KEY": admin_key}
    env.pop("DS2PROXY_CONFIG_JSON", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ds2proxy", "--config", str(config), "--port", "0",
        stderr=asyncio.subprocess.PIPE, env=env, cwd=config.parent)
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "the server exited before listening"
        if " listening on " in line:
            drain = asyncio.create_task(proc.stderr.read())  # never let the pipe fill up
            proc.drain = drain  # type: ignore[attr-defined]  # kept alive with the process
            return proc, line.split(" listening on ", 1)[1].split()[0]


async def _add_keys_until_killed(http: aiohttp.ClientSession, url: str, token: str,
                                 prefix: str, acked: list[str], port: int) -> None:
    """Writers, some aborted mid-way, until the server dies under them."""
    n = 0
    while True:
        n += 1
        key = f"{prefix}-{n}"
        aborted = _raw_request(port, "POST", "/admin/keys", token,
                               json.dumps({"key": key + "-x"}).encode())
        try:
            await send_and_reset(port, aborted, 0.001)
            async with http.post(f"{url}/admin/keys", json={"key": key},
                                 headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status == 200:
                    acked.append(key)
        except (aiohttp.ClientError, ConnectionError):
            return  # killed: this write was never acknowledged


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"keys": ["sk-first"],
                                  "upstream": {"base_url": "http://127.0.0.1:9"}}))
    acked: list[str] = []
    for round_ in range(KILL_ROUNDS):
        proc, url = await _start_server(config, "kill-test-admin")
        port = int(url.rsplit(":", 1)[1])
        async with aiohttp.ClientSession() as http:
            token = (await login(http, url, "kill-test-admin")).json()["token"]
            before = len(acked)
            writers = [asyncio.create_task(_add_keys_until_killed(
                http, url, token, f"sk-r{round_}-w{w}", acked, port)) for w in range(3)]
            async with asyncio.timeout(30):
                while len(acked) < before + ACKS_BEFORE_KILL:
                    done, _ = await asyncio.wait(writers, timeout=0.005)
                    assert not done, "a writer stopped before the kill"
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await asyncio.gather(*writers)
        json.loads(config.read_text())  # valid JSON, whatever the kill interrupted
        on_disk = keys_on_disk(config)
        missing = [k for k in acked if k not in on_disk]
        assert missing == [], f"round {round_}: acknowledged writes lost: {missing}"


# -- a write made from a stale read (If-Match) ----------------------------------------------------


def tag_of(reply) -> str:
    """The reply's ETag (header names are case-insensitive)."""
    return next(v for k, v in reply.headers.items() if k.lower() == "etag")


async def _second_admin(admin: Admin) -> Admin:
    reply = await login(admin.http, admin.proxy.url, admin.proxy.admin_key)
    return Admin(admin.proxy, admin.http, reply.json()["token"])


async def test_a_list_write_from_a_stale_read_is_a_412(admin: Admin) -> None:
    """Two admins read the accounts; one adds an account; the other's whole-list
    write from its older read must not silently delete it."""
    other = await _second_admin(admin)
    read = await admin.call("GET", "/admin/config")
    tag, accounts = tag_of(read), read.json()["accounts"]
    assert tag_of(await other.call("GET", "/admin/config")) == tag
    await other.ok("POST", "/admin/accounts", json={"email": "new@example.com", "password": "pw"})
    on_disk = admin.proxy.config_path.read_bytes()
    for stale in (tag, '"0000"', f"W/{tag}"):
        reply = await admin.call("POST", "/admin/config", json={"accounts": accounts[:1]},
                                 headers={"If-Match": stale})
        assert reply.status == 412 and "changed since it was read" in reply.json()["detail"]
        reply = await admin.call("POST", "/admin/config/import?mode=replace",
                                 json={"accounts": accounts[:1]}, headers={"If-Match": stale})
        assert reply.status == 412
    assert admin.proxy.config_path.read_bytes() == on_disk
    fresh = await admin.call("GET", "/admin/config")
    assert tag_of(fresh) != tag
    written = await admin.call("POST", "/admin/config", json={"accounts": accounts[:1]},
                               headers={"If-Match": f'"other", {tag_of(fresh)}'})
    assert written.status == 200 and tag_of(written) != tag_of(fresh)
    assert [a["identifier"] for a in written.json()["config"]["accounts"]] == \
        [accounts[0]["identifier"]]
    star = await admin.call("POST", "/admin/config/import", json={"keys": ["sk-added-1"]},
                            headers={"If-Match": "*"})
    assert star.status == 200
    # Without If-Match a write applies as it always did.
    assert (await admin.call("POST", "/admin/config", json={"keys": ["k-1"]})).status == 200


async def test_of_two_writes_from_one_read_only_the_first_lands(admin: Admin) -> None:
    other = await _second_admin(admin)
    tag = tag_of(await admin.call("GET", "/admin/config"))
    replies = await asyncio.gather(*(
        who.call("POST", "/admin/config", json={"model_aliases": {"team": model}},
                 headers={"If-Match": tag})
        for who, model in ((admin, "deepseek-chat"), (other, "deepseek-reasoner"))))
    assert sorted(r.status for r in replies) == [200, 412]
    winner = "deepseek-chat" if replies[0].status == 200 else "deepseek-reasoner"
    assert json.loads(admin.proxy.config_path.read_text())["model_aliases"] == {"team": winner}


async def test_a_token_the_server_refreshes_does_not_make_a_read_stale(admin: Admin) -> None:
    tag = tag_of(await admin.call("GET", "/admin/config"))
    before = admin.proxy.store.snapshot()["accounts"][0].get("token")
    assert (await admin.ok("POST", "/admin/accounts/test",
                           json={"identifier": "alice@example.com"}))["success"] is True
    assert admin.proxy.store.snapshot()["accounts"][0].get("token") != before
    reply = await admin.call("POST", "/admin/config", json={"keys": ["k-2"]},
                             headers={"If-Match": tag})
    assert reply.status == 200, reply.raw


async def test_a_proxy_set_as_its_account_is_deleted_is_a_404(admin: Admin) -> None:
    """With a config that lives in memory (no file to wait for) the delete
    queued behind the proxy write lands before the proxy route reads back
    the account: that is a 404 naming it, not a server error."""
    admin.proxy.store.path = None
    ops = admin.ctx.ops
    for i in range(5):
        email = f"race{i}@example.com"
        await admin.ok("POST", "/admin/accounts", json={"email": email, "password": "pw"})
        proxy_set, deleted = await asyncio.gather(
            ops.set_proxy(email, "http://127.0.0.1:3128"), ops.remove_account(email),
            return_exceptions=True)
        assert isinstance(deleted, int)
        # Today the delete lands first; the answer is the account as set or a 404.
        assert isinstance(proxy_set, dict) or (
            isinstance(proxy_set, NotFound) and email in proxy_set.message), proxy_set
        assert admin.proxy.core.pool.find(email) is None


async def test_a_key_deleted_as_it_is_created_is_a_404(admin: Admin) -> None:
    """The same race for ``POST /admin/keys``: the reply is the key or a 404."""
    admin.proxy.store.path = None
    api = UsageAPI(admin.ctx)
    for i in range(5):
        secret = f"sk-racing-key-{i:04d}-abcdef"
        created, deleted = await asyncio.gather(
            api.create({"name": f"racer-{i}", "key": secret}),
            admin.ctx.ops.remove_key(secret), return_exceptions=True)
        assert isinstance(deleted, int)
        assert isinstance(created, dict) or isinstance(created, NotFound), created
        assert secret not in admin.proxy.core.config.key_secrets


async def test_a_config_that_cannot_be_saved_is_a_503_and_changes_nothing(
        admin: Admin, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def disk_full(path: Path, data: dict) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    before, on_disk = admin.proxy.store.snapshot(), admin.proxy.config_path.read_bytes()
    limits = admin.proxy.core.pool.limits
    monkeypatch.setattr(config_store, "atomic_write_json", disk_full)
    reply = await admin.call("PUT", "/admin/settings",
                             json={"runtime": {"account_max_inflight": 7}})
    assert reply.status == 503 and "No space left on device" in reply.json()["detail"]
    assert str(admin.proxy.config_path).encode() not in reply.raw
    assert admin.proxy.store.snapshot() == before and admin.proxy.core.pool.limits == limits
    assert admin.proxy.config_path.read_bytes() == on_disk
    assert not [r for r in caplog.records if r.exc_info]  # one line, no traceback
    monkeypatch.undo()
    await admin.ok("PUT", "/admin/settings", json={"runtime": {"account_max_inflight": 7}})
    assert admin.proxy.core.pool.limits.per_account == 7
