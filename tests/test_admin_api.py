"""The admin JSON API over real HTTP: auth, masking, config, settings with
hot reload, keys, accounts, import/export, captures, plugins, concurrency."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import aiohttp
import jwt
import pytest

from ds2proxy.keyring import secret_of
from admin_util import (
    CAROL,
    LONG_KEY,
    PLUGIN_SECRET,
    STORED_TOKEN,
    TOKEN_ONLY,
    Admin,
    admin,  # noqa: F401  (fixture)
    admin_for,
    wait_until,
    login,
    secret_admin,  # noqa: F401  (fixture)
)
from conftest import ADMIN_KEY, TEST_KEY

from ds2proxy.admin import ADMIN, credentials
from ds2proxy.app import create_app, start_server
from ds2proxy.config_store import ConfigStore
from ds2proxy.scheduler import Limits

GUARDED = [
    ("GET", "/admin/config"), ("POST", "/admin/config"), ("GET", "/admin/settings"),
    ("PUT", "/admin/settings"), ("POST", "/admin/settings/password"),
    ("POST", "/admin/config/import"), ("GET", "/admin/config/export"), ("GET", "/admin/export"),
    ("POST", "/admin/keys"), ("DELETE", "/admin/keys/whatever"), ("POST", "/admin/import"),
    ("GET", "/admin/accounts"), ("POST", "/admin/accounts"),
    ("DELETE", "/admin/accounts/alice@example.com"), ("POST", "/admin/accounts/test"),
    ("POST", "/admin/accounts/test-all"), ("GET", "/admin/queue/status"), ("POST", "/admin/test"),
    ("GET", "/admin/overview"), ("GET", "/admin/plugins"), ("GET", "/admin/dev/captures"),
    ("DELETE", "/admin/dev/captures"), ("POST", "/admin/ui/playground/send"),
    ("GET", "/admin/providers"), ("POST", "/admin/providers"), ("GET", "/admin/providers/x"),
    ("PUT", "/admin/providers/x"), ("DELETE", "/admin/providers/x"),
    ("POST", "/admin/providers/x/test"),
]


def file_doc(admin: Admin) -> dict:
    return json.loads(admin.proxy.config_path.read_text())


# -- authentication -------------------------------------------------------------------------


async def test_login_issues_a_jwt_that_verifies(admin: Admin):
    body = await admin.ok("GET", "/admin/verify")
    assert body["valid"] is True
    assert 86000 < body["remaining_seconds"] <= 86400
    short = await login(admin.http, admin.proxy.url, ADMIN_KEY, expire_hours=1)
    assert short.status == 200 and short.json()["expires_in"] == 3600
    assert short.json()["success"] is True


@pytest.mark.parametrize("method,path", GUARDED)
async def test_every_admin_route_refuses_strangers(admin: Admin, method, path):
    for token in (None, "wrong-key", f"{'a' * 20}.{'b' * 20}.{'c' * 20}"):
        reply = await admin.call(method, path, json={}, token=token, auth=token is not None)
        assert reply.status == 401, (method, path, token)
        assert set(reply.json()) == {"detail"}


async def test_the_admin_key_itself_is_accepted_as_bearer_but_not_by_verify(admin: Admin):
    assert (await admin.call("GET", "/admin/queue/status", token=ADMIN_KEY)).status == 200
    reply = await admin.call("GET", "/admin/verify", token=ADMIN_KEY)
    assert reply.status == 401 and "detail" in reply.json()


async def test_wrong_login_and_bad_bodies(admin: Admin):
    wrong = await login(admin.http, admin.proxy.url, "not-the-key")
    assert wrong.status == 401 and wrong.json() == {"detail": "invalid admin key"}
    bad_hours = await login(admin.http, admin.proxy.url, ADMIN_KEY, expire_hours=-1)
    assert bad_hours.status == 400 and bad_hours.json()["field"] == "expire_hours"
    async with admin.http.post(admin.proxy.url + "/admin/login", data=b"{not json") as resp:
        assert resp.status == 400 and "detail" in await resp.json()


async def test_expired_token_is_refused(admin: Admin):
    secret = admin.proxy.store.snapshot()["admin"]["jwt_secret"]
    now = time.time()
    expired = jwt.encode({"sub": "admin", "iat": now - 100, "exp": int(now) - 10,
                          "jti": uuid.uuid4().hex}, secret, algorithm="HS256")
    reply = await admin.call("GET", "/admin/config", token=expired)
    assert reply.status == 401 and "expired" in reply.json()["detail"]
    forged = jwt.encode({"sub": "admin", "iat": now, "exp": int(now) + 999, "jti": "x"},
                        "not-the-secret-at-all-" * 2, algorithm="HS256")
    assert (await admin.call("GET", "/admin/verify", token=forged)).status == 401


async def test_a_new_admin_key_at_restart_revokes_the_sessions_of_the_old_one(proxy_factory):
    """Rotating a leaked DS2PROXY_ADMIN_KEY left every token issued under it
    (up to 30 days' worth, by expire_hours) valid after the restart."""
    proxy = await proxy_factory(admin_key="the-leaked-admin-key")
    async with aiohttp.ClientSession() as http:
        token = (await login(http, proxy.url, "the-leaked-admin-key",
                             expire_hours=720)).json()["token"]
        await proxy.server.close()
        for key, status in (("a-rotated-admin-key", 401), ("the-leaked-admin-key", 200)):
            app = create_app(ConfigStore.from_sources(str(proxy.config_path), {}),
                             admin_key=key)
            server = await start_server(app)
            try:
                async with http.get(f"{server.url}/admin/config",
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                    assert resp.status == status, (key, await resp.text())
                    if status == 401:
                        assert "revoked" in (await resp.json())["detail"]
            finally:
                await server.close()


async def test_failed_logins_are_slowed_but_the_right_key_always_gets_in(admin: Admin):
    throttle = admin.ctx.gate.throttle
    throttle.base_delay, throttle.max_delay = 0.01, 0.05  # short, but really waited
    guesses = throttle.free_attempts + 4
    for _ in range(guesses):
        assert (await login(admin.http, admin.proxy.url, "guess")).status == 401
    assert throttle.failures("127.0.0.1") == guesses
    # Formerly a 429 lock-out for everyone at this address: the key still opens.
    assert (await login(admin.http, admin.proxy.url, ADMIN_KEY)).status == 200
    assert (await admin.call("GET", "/admin/config", token=ADMIN_KEY)).status == 200
    # Guessing through the Bearer header counts the same way.
    assert (await admin.call("GET", "/admin/config", token="guess-2")).status == 401
    assert throttle.failures("127.0.0.1") == guesses + 1


async def test_guesses_over_ipv6_count_per_slash_64(proxy_factory):
    """Counted per IPv6 address, a host handed a /64 (the usual grant) could
    guess from a fresh address each time and never be slowed down."""
    proxy = await proxy_factory()
    await proxy.server.close()
    app = create_app(ConfigStore.from_sources(str(proxy.config_path), {}), admin_key=ADMIN_KEY)
    server = await start_server(app, host="::1")
    try:
        async with aiohttp.ClientSession() as http:
            assert (await login(http, f"http://[::1]:{server.port}", "guess")).status == 401
        throttle = app[ADMIN].gate.throttle
        assert throttle.failures("::/64") == 1 and throttle.failures("::1") == 0
    finally:
        await server.close()


async def test_password_guesses_do_not_hold_up_the_servers_other_threaded_work(admin: Admin):
    """Each guess at a password runs scrypt in a thread. They ran in the
    default executor, which also counts tokens and parses large bodies for
    every API request: guesses from a few addresses queued all of that
    behind them. Now they have threads of their own."""
    await admin.ok("POST", "/admin/settings/password", json={"new_password": "a long password"})
    throttle = admin.ctx.gate.throttle
    addresses = [f"127.0.0.{i}" for i in range(2, 8)]
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(a, 0)))
                for a in addresses]
    try:
        guesses = [asyncio.create_task(login(http, admin.proxy.url, f"guess-{i}"))
                   for http in sessions for i in range(throttle.free_attempts)]
        await wait_until(lambda: sum(throttle.pending(a) for a in addresses) == len(guesses))
        await asyncio.to_thread(lambda: None)  # what a token count or body parse waits for
        checked = sum(throttle.failures(a) for a in addresses)
        assert checked < len(guesses) // 2, (checked, len(guesses))
        assert all(r.status == 401 for r in await asyncio.gather(*guesses))
    finally:
        for http in sessions:
            await http.close()


async def test_parallel_guesses_beyond_the_held_ones_are_refused_unchecked(admin: Admin):
    throttle = admin.ctx.gate.throttle
    throttle.free_attempts, throttle.base_delay, throttle.max_pending = 0, 60.0, 2
    held = [asyncio.create_task(login(admin.http, admin.proxy.url, f"guess-{i}"))
            for i in range(2)]
    await wait_until(lambda: throttle.pending("127.0.0.1") == 2)
    refused = await login(admin.http, admin.proxy.url, "guess-3")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "detail" in refused.json()
    assert throttle.failures("127.0.0.1") == 2  # the third was not even checked
    # A valid JWT is no key guess: never throttled.
    assert (await admin.call("GET", "/admin/config")).status == 200
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    await admin.http.close()  # the server cancels the held handlers
    await wait_until(lambda: throttle.pending("127.0.0.1") == 0)


async def test_a_burst_of_password_guesses_is_checked_at_most_max_pending_at_once(
        admin: Admin, monkeypatch):
    """Checking a password (scrypt, in a thread) takes a while: guesses sent
    together all passed the held-failures check before the first one failed,
    so every one of them was checked, however many were sent."""
    await admin.ok("POST", "/admin/settings/password", json={"new_password": "a long password"})
    throttle = admin.ctx.gate.throttle
    throttle.base_delay, throttle.max_delay = 0.01, 0.05
    checked = 0
    real = credentials.verify_password

    async def counted(candidate: str, stored: str) -> bool:
        nonlocal checked
        checked += 1
        return await real(candidate, stored)

    monkeypatch.setattr(credentials, "verify_password", counted)
    replies = await asyncio.gather(*(login(admin.http, admin.proxy.url, f"guess-{i}")
                                     for i in range(30)))
    statuses = sorted(r.status for r in replies)
    assert checked <= throttle.max_pending and statuses.count(401) == checked
    assert statuses.count(429) == 30 - checked
    await wait_until(lambda: throttle.pending("127.0.0.1") == 0)
    assert (await login(admin.http, admin.proxy.url, "a long password")).status == 200


async def test_password_change_revokes_earlier_tokens_and_replaces_the_key(admin: Admin):
    new_password = "a brand new passphrase"
    old_token = admin.token
    reply = await admin.call("POST", "/admin/settings/password",
                             json={"new_password": new_password})
    assert reply.status == 200
    assert new_password.encode() not in reply.raw
    fresh = reply.json()["token"]
    revoked = await admin.call("GET", "/admin/config", token=old_token)
    assert revoked.status == 401 and "revoked" in revoked.json()["detail"]
    assert (await admin.call("GET", "/admin/verify", token=old_token)).status == 401
    assert (await admin.call("GET", "/admin/config", token=fresh)).status == 200
    assert (await login(admin.http, admin.proxy.url, ADMIN_KEY)).status == 401
    relog = await login(admin.http, admin.proxy.url, new_password)
    assert relog.status == 200
    assert (await admin.call("GET", "/admin/config", token=new_password)).status == 200
    stored = file_doc(admin)["admin"]
    assert stored["password_hash"].startswith("scrypt$")
    assert new_password not in admin.proxy.config_path.read_text()
    view = await admin.ok("GET", "/admin/settings", token=fresh)
    assert view["admin"]["password_set"] is True
    assert view["admin"]["default_key_in_use"] is False


async def test_a_current_password_sent_with_a_change_must_be_right(admin: Admin):
    """The spec's body is {"new_password"} alone, and that keeps working; a
    current_password sent beside it was ignored, so a client asking for the
    check got none: a wrong one changed the password all the same."""
    throttle = admin.ctx.gate.throttle
    for wrong in ("not-the-admin-key", ""):
        reply = await admin.call("POST", "/admin/settings/password", json={
            "current_password": wrong, "new_password": "a brand new passphrase"})
        assert reply.status == 403, reply.raw
        assert reply.json()["field"] == "current_password"
        assert "not-the-admin-key" not in reply.raw.decode()
    assert throttle.failures("127.0.0.1") == 2  # guesses are slowed like the login's
    reply = await admin.call("POST", "/admin/settings/password", json={
        "current_password": 12345678, "new_password": "a brand new passphrase"})
    assert reply.status == 400 and reply.json()["field"] == "current_password"
    assert "password_hash" not in file_doc(admin).get("admin", {})
    admin.token = (await admin.ok("POST", "/admin/settings/password", json={
        "current_password": ADMIN_KEY, "new_password": "a brand new passphrase"}))["token"]
    await admin.ok("POST", "/admin/settings/password", json={
        "current_password": "a brand new passphrase", "new_password": "another passphrase"})
    assert (await login(admin.http, admin.proxy.url, "another passphrase")).status == 200


async def test_a_bad_new_password_is_named_before_the_current_one_is_checked(admin: Admin):
    reply = await admin.call("POST", "/admin/settings/password", json={
        "current_password": "a wrong guess", "new_password": "short"})
    assert reply.status == 400 and reply.json()["field"] == "new_password"
    assert admin.ctx.gate.throttle.failures("127.0.0.1") == 0


async def test_short_password_is_refused_with_its_field(admin: Admin):
    reply = await admin.call("POST", "/admin/settings/password", json={"new_password": "short"})
    assert reply.status == 400 and reply.json()["field"] == "new_password"
    assert "password_hash" not in file_doc(admin).get("admin", {})


@pytest.mark.parametrize("password", [" spaced-out-passphrase", "trailing-space-pass ",
                                      "line\nbreak-pass", "tab\tinside-pass"])
async def test_a_password_no_bearer_header_can_carry_is_refused(admin: Admin, password: str):
    """Such a password was stored, then opened only the login form: the JSON
    login trims it and a Bearer header cannot carry it."""
    reply = await admin.call("POST", "/admin/settings/password", json={"new_password": password})
    assert reply.status == 400 and reply.json()["field"] == "new_password", reply.raw
    assert "password_hash" not in file_doc(admin).get("admin", {})


async def test_a_unicode_password_with_inner_spaces_opens_every_door(admin: Admin):
    password = "pässwörd mit ümlauten"
    await admin.ok("POST", "/admin/settings/password", json={"new_password": password})
    assert (await login(admin.http, admin.proxy.url, password)).status == 200
    assert (await admin.call("GET", "/admin/config", token=password)).status == 200


async def test_default_key_is_reported(proxy_factory):
    proxy = await proxy_factory(admin_key="")
    async with aiohttp.ClientSession() as http:
        reply = await login(http, proxy.url, "admin")
        assert reply.status == 200
        token = reply.json()["token"]
        async with http.get(proxy.url + "/admin/settings",
                            headers={"Authorization": f"Bearer {token}"}) as resp:
            assert (await resp.json())["admin"]["default_key_in_use"] is True


# -- masking ----------------------------------------------------------------------------------


async def test_no_admin_read_contains_any_secret(secret_admin: Admin):
    a = secret_admin
    # Log an account in so a fresh upstream token is stored, and set a password
    # so a hash exists: both must stay out of every read too.
    assert (await a.ok("POST", "/admin/accounts/test",
                       json={"identifier": "alice@example.com"}))["success"] is True
    password = "correct horse battery staple"
    a.token = (await a.ok("POST", "/admin/settings/password",
                          json={"new_password": password}))["token"]
    await a.ok("PUT", "/admin/settings", json={"dev_captures": {"enabled": True}})
    capture = a.ctx.captures.start("POST", "http://up/api/v0/users/login",
                                   {"authorization": f"Bearer {STORED_TOKEN}"},
                                   json.dumps({"password": CAROL[1]}).encode())
    capture.append(json.dumps({"token": TOKEN_ONLY}).encode())
    capture.finish()

    doc = a.proxy.store.snapshot()
    alice_token = next(x["token"] for x in doc["accounts"] if x.get("email") == "alice@example.com")
    secrets = [LONG_KEY, TEST_KEY, PLUGIN_SECRET, TOKEN_ONLY, STORED_TOKEN, CAROL[1], "pw-alice",
               "pw-bob", alice_token, password, ADMIN_KEY, doc["admin"]["password_hash"],
               doc["admin"]["jwt_secret"]]
    reads = ["/admin/config", "/admin/settings", "/admin/accounts?page_size=100",
             "/admin/queue/status", "/admin/overview", "/admin/plugins", "/admin/dev/captures",
             "/admin/verify"]
    for path in reads:
        reply = await a.call("GET", path)
        assert reply.status == 200, path
        for secret in secrets:
            assert secret.encode() not in reply.raw, (path, secret)
    writes = await a.call("POST", "/admin/config", json={"claude_mapping": {}})
    for secret in secrets:
        assert secret.encode() not in writes.raw
    view = (await a.call("GET", "/admin/config")).json()
    carol = next(x for x in view["accounts"] if x["identifier"] == CAROL[0])
    assert carol["has_password"] and carol["has_token"] and carol["token_preview"] == "stor…44"
    assert {"id", "preview"} == set(view["keys"][1]) and view["keys"][1]["preview"] == "sk-l…YZ"


async def test_exports_are_full_backups_without_the_admin_credentials(secret_admin: Admin):
    a = secret_admin
    full = await a.ok("GET", "/admin/config/export")
    assert LONG_KEY in [secret_of(k) for k in full["config"]["keys"]]
    assert CAROL[1] in full["json"]
    assert json.loads(full["json"]) == full["config"]
    assert json.loads(base64.b64decode(full["base64"])) == full["config"]
    text = await a.ok("GET", "/admin/export")
    assert set(text) == {"json", "base64"} and json.loads(text["json"]) == full["config"]
    secret = a.proxy.store.snapshot()["admin"]["jwt_secret"]
    assert secret not in full["json"] and "jwt_secret" not in full["json"]


# -- config read / write / import -------------------------------------------------------------


async def test_post_config_round_trips_the_masked_view(secret_admin: Admin):
    a = secret_admin
    view = await a.ok("GET", "/admin/config")
    kept_keys = [{"id": view["keys"][1]["id"]}, "sk-another-new-key-1234"]
    reply = await a.ok("POST", "/admin/config", json={
        "keys": kept_keys, "accounts": view["accounts"][2:],
        "model_aliases": {"team-model": "deepseek-reasoner"}})
    assert reply["success"] is True
    doc = a.proxy.store.snapshot()
    assert [secret_of(k) for k in doc["keys"]] == [LONG_KEY, "sk-another-new-key-1234"]
    assert doc["keys"][0]["name"] == "key-fXYZ"  # a kept key keeps its name
    assert doc["accounts"] == [{"email": CAROL[0], "password": CAROL[1], "token": STORED_TOKEN},
                               {"token": TOKEN_ONLY}]
    assert a.proxy.core.models.resolve("team-model").native == "deepseek-reasoner"


@pytest.mark.parametrize("body,field", [
    ({"runtime": {}}, "runtime"),
    ({"keys": ["sk-a…bc"]}, "key"),
    ({"keys": [{"id": "unknown"}]}, "keys"),
    ({"accounts": [{"email": "x@y.z"}]}, "password"),
    ({"model_aliases": {"m": "not-a-model"}}, "model_aliases.m"),
])
async def test_post_config_refuses_bad_bodies(admin: Admin, body, field):
    before = admin.proxy.store.snapshot()
    reply = await admin.call("POST", "/admin/config", json=body)
    assert reply.status == 400 and reply.json()["field"] == field
    assert admin.proxy.store.snapshot() == before


async def test_import_merge_replace_and_wrapped(admin: Admin):
    merged = await admin.ok("POST", "/admin/config/import", json={
        "keys": ["sk-imported-000000"], "accounts": [{"email": "new@example.com",
                                                      "password": "new-pw-1"}],
        "runtime": {"account_max_inflight": 3}})
    assert merged == {"success": True, "mode": "merge", "total_keys": 2, "total_accounts": 3,
                      "warnings": []}
    assert admin.proxy.core.pool.limits.per_account == 3
    replaced = await admin.ok("POST", "/admin/config/import", json={
        "mode": "replace", "config": {"keys": ["only-key-000000"],
                                      "upstream": admin.proxy.store.snapshot()["upstream"]}})
    assert replaced["mode"] == "replace" and replaced["total_accounts"] == 0
    assert admin.proxy.core.config.key_secrets == ("only-key-000000",)
    # The admin's session survives a replace: its credentials are never imported.
    assert (await admin.call("GET", "/admin/verify")).status == 200
    by_query = await admin.call("POST", "/admin/config/import?mode=merge", json={"keys": ["k2"]})
    assert by_query.status == 200
    assert admin.proxy.core.config.key_secrets == ("only-key-000000", "k2")


async def test_import_refuses_invalid_config_and_changes_nothing(admin: Admin):
    before = admin.proxy.store.snapshot()
    bad = await admin.call("POST", "/admin/config/import",
                           json={"runtime": {"account_max_inflight": 0}})
    assert bad.status == 400 and bad.json()["field"] == "runtime.account_max_inflight"
    mode = await admin.call("POST", "/admin/config/import", json={"config": {}, "mode": "wipe"})
    assert mode.status == 400 and mode.json()["field"] == "mode"
    assert admin.proxy.store.snapshot() == before == json.loads(
        admin.proxy.config_path.read_text())


# -- settings and hot reload -------------------------------------------------------------------


async def test_settings_update_hot_reloads_the_pool(admin: Admin):
    pool = admin.proxy.core.pool
    assert pool.limits != Limits(5, 7, 9)
    reply = await admin.ok("PUT", "/admin/settings", json={"runtime": {
        "account_max_inflight": 5, "account_max_queue": 7, "global_max_inflight": 9}})
    assert pool.limits == Limits(5, 7, 9)
    assert reply["settings"]["runtime"]["account_max_queue"] == 7
    assert file_doc(admin)["runtime"]["account_max_inflight"] == 5
    queue = await admin.ok("GET", "/admin/queue/status")
    assert queue["max_inflight_per_account"] == 5 and queue["max_queue_size"] == 7
    await admin.ok("PUT", "/admin/settings", json={"runtime": {"account_max_queue": None}})
    assert pool.limits.queue == 2 * 5  # automatic again: accounts x per-account
    assert "account_max_queue" not in file_doc(admin)["runtime"]


async def test_settings_get_has_the_nested_shape(admin: Admin):
    view = await admin.ok("GET", "/admin/settings")
    assert view["runtime"]["account_max_inflight"] == admin.proxy.core.config.runtime\
        .account_max_inflight
    for section in ("admin", "runtime", "toolcall", "responses", "embeddings", "search",
                    "dev_captures"):
        assert isinstance(view[section], dict), section
    assert view["embeddings"]["provider"] == "testing"
    assert view["admin"]["jwt_expire_hours"] == 24
    assert isinstance(view["claude_mapping"], dict) and isinstance(view["model_aliases"], dict)
    # What was read can be sent back unchanged.
    assert (await admin.call("PUT", "/admin/settings", json=view)).status == 200


@pytest.mark.parametrize("body,field", [
    ({"runtime": {"account_max_inflight": 0}}, "runtime.account_max_inflight"),
    ({"runtime": {"account_max_inflight": "3"}}, "runtime.account_max_inflight"),
    ({"runtime": {"global_max_inflight": -1}}, "runtime.global_max_inflight"),
    ({"toolcall": {"mode": "sometimes"}}, "toolcall.mode"),
    ({"search": {"citation_style": "fancy"}}, "search.citation_style"),
    ({"runtime": {"max_body_bytes": 1}}, "runtime.max_body_bytes"),
    ({"model_aliases": {"x": "gpt-4o"}}, "model_aliases.x"),
    ({"claude_mapping": {"fast": 3}}, "claude_mapping.fast"),
    ({"admin": {"password_hash": "x"}}, "admin.password_hash"),
])
async def test_settings_validation_names_the_field_and_changes_nothing(admin: Admin, body, field):
    before = admin.proxy.store.snapshot()
    reply = await admin.call("PUT", "/admin/settings", json=body)
    assert reply.status == 400
    assert reply.json()["field"] == field and reply.json()["detail"]
    assert admin.proxy.store.snapshot() == before


async def test_alias_and_claude_mapping_apply_at_once(admin: Admin):
    await admin.ok("PUT", "/admin/settings", json={
        "model_aliases": {"house-model": "deepseek-reasoner"},
        "claude_mapping": {"fast": "deepseek-reasoner", "slow": "deepseek-chat"}})
    models = admin.proxy.core.models
    assert models.resolve("house-model").native == "deepseek-reasoner"
    assert models.resolve("claude-haiku-4-5", family="claude").native == "deepseek-reasoner"
    async with admin.http.get(admin.proxy.url + "/v1/models/house-model") as resp:
        assert resp.status == 200 and (await resp.json())["id"] == "deepseek-reasoner"


async def test_limits_change_under_a_running_stream_without_dropping_it(admin: Admin):
    from ds2proxy.testing import Delivery, Scripted

    answer = "streamed answer " * 8
    admin.proxy.fake.enqueue(Scripted(answer=answer, chunk_size=4,
                                      delivery=Delivery(chunk_delay=0.01)))
    body = {"model": "deepseek-chat", "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    pool = admin.proxy.core.pool
    async with admin.http.post(admin.proxy.url + "/v1/chat/completions", json=body,
                               headers=admin.proxy.headers()) as stream:
        assert stream.status == 200
        first = await stream.content.readline()
        assert first.startswith(b"data:") and pool.inflight == 1
        await admin.ok("PUT", "/admin/settings", json={"runtime": {
            "account_max_inflight": 1, "account_max_queue": 0, "global_max_inflight": 1}})
        async with admin.http.post(admin.proxy.url + "/v1/chat/completions",
                                   json={**body, "stream": False},
                                   headers=admin.proxy.headers()) as busy:
            assert busy.status == 429  # the new limit applies to the next request
        rest = (first + await stream.read()).decode()
    text = "".join(json.loads(line[5:])["choices"][0]["delta"].get("content") or ""
                   for line in rest.splitlines()
                   if line.startswith("data:") and line[5:].strip() != "[DONE]"
                   and json.loads(line[5:])["choices"])
    assert text == answer
    assert "data: [DONE]" in rest
    assert pool.inflight == 0


# -- keys --------------------------------------------------------------------------------------


async def test_keys_add_and_delete(admin: Admin):
    added = await admin.ok("POST", "/admin/keys", json={"key": "sk-new-key-0000000"})
    assert added == {"success": True, "total_keys": 2}
    assert (await admin.call("POST", "/admin/keys", json={"key": "sk-new-key-0000000"})).status \
        == 409
    empty = await admin.call("POST", "/admin/keys", json={"key": " "})
    assert empty.status == 400 and empty.json()["field"] == "key"
    view = await admin.ok("GET", "/admin/config")
    key_id = next(k["id"] for k in view["keys"] if k["preview"] == "sk-n…00")
    assert (await admin.ok("DELETE", f"/admin/keys/{key_id}"))["total_keys"] == 1
    assert (await admin.ok("DELETE", f"/admin/keys/{TEST_KEY}"))["total_keys"] == 0
    missing = await admin.call("DELETE", "/admin/keys/nope")
    assert missing.status == 404 and "detail" in missing.json()
    assert file_doc(admin)["keys"] == []


async def test_twenty_concurrent_key_adds_all_persist(admin: Admin):
    keys = [f"sk-concurrent-{i:02d}-abcdef" for i in range(20)]
    replies = await asyncio.gather(*(admin.call("POST", "/admin/keys", json={"key": k})
                                     for k in keys))
    assert [r.status for r in replies] == [200] * 20
    assert sorted(r.json()["total_keys"] for r in replies) == list(range(2, 22))
    assert set(keys) <= {secret_of(k) for k in file_doc(admin)["keys"]}
    assert set(keys) <= set(admin.proxy.core.config.key_secrets)


async def test_concurrent_mixed_writes_never_lose_each_other(admin: Admin):
    writes = [admin.call("POST", "/admin/keys", json={"key": f"sk-mixed-{i}-0000000"})
              for i in range(5)]
    writes += [admin.call("POST", "/admin/accounts",
                          json={"email": f"m{i}@example.com", "password": "pw-mixed"})
               for i in range(5)]
    writes += [admin.call("PUT", "/admin/settings", json={"responses": {"store_ttl_seconds": 77}}),
               admin.call("PUT", "/admin/settings", json={"search": {"citation_style": "strip"}})]
    assert all(r.status == 200 for r in await asyncio.gather(*writes))
    doc = file_doc(admin)
    assert len(doc["keys"]) == 6 and len(doc["accounts"]) == 7
    assert doc["responses"]["store_ttl_seconds"] == 77
    assert doc["search"]["citation_style"] == "strip"


# -- accounts -----------------------------------------------------------------------------------


async def test_accounts_are_paginated_and_masked(admin: Admin):
    batch = [{"email": f"user{i:02d}@example.com", "password": f"pw-user-{i:02d}"}
             for i in range(25)]
    imported = await admin.ok("POST", "/admin/import", json={"accounts": batch})
    assert imported["imported_accounts"] == 25
    page = await admin.ok("GET", "/admin/accounts?page=3&page_size=10")
    assert page["total"] == 27 and page["total_pages"] == 3 and page["page"] == 3
    assert len(page["items"]) == 7
    first = await admin.ok("GET", "/admin/accounts")
    assert first["page_size"] == 10 and len(first["items"]) == 10
    assert first["items"][0]["identifier"] == "alice@example.com"
    raw = (await admin.call("GET", "/admin/accounts?page_size=100")).raw
    assert b"pw-user-" not in raw
    found = await admin.ok("GET", "/admin/accounts?q=user07")
    assert [i["identifier"] for i in found["items"]] == ["user07@example.com"]
    for query, field in (("page_size=0", "page_size"), ("page_size=101", "page_size"),
                         ("page=0", "page"), ("page=two", "page")):
        reply = await admin.call("GET", f"/admin/accounts?{query}")
        assert reply.status == 400 and reply.json()["field"] == field


async def test_account_add_variants_and_delete(admin: Admin):
    mobile = await admin.ok("POST", "/admin/accounts",
                            json={"mobile": "138 0013 8000", "area_code": "+86",
                                  "password": "pw-mobile-1"})
    assert mobile["identifier"] == "+8613800138000" and mobile["total_accounts"] == 3
    token = await admin.ok("POST", "/admin/accounts", json={"token": "tok-only-123456789"})
    assert token["identifier"].startswith("token:")
    again = await admin.call("POST", "/admin/accounts", json={"email": "alice@example.com",
                                                              "password": "x"})
    assert again.status == 409
    missing = await admin.call("POST", "/admin/accounts", json={"email": "z@example.com"})
    assert missing.status == 400 and missing.json()["field"] == "password"
    assert (await admin.ok("DELETE", "/admin/accounts/13800138000"))["total_accounts"] == 3
    assert (await admin.ok("DELETE", f"/admin/accounts/{token['identifier']}"))[
        "total_accounts"] == 2
    assert (await admin.call("DELETE", "/admin/accounts/ghost@example.com")).status == 404
    assert [a.identifier for a in admin.proxy.core.pool.accounts()] == [
        "alice@example.com", "bob@example.com"]


async def test_batch_import_adds_and_updates(admin: Admin):
    reply = await admin.ok("POST", "/admin/import", json={
        "keys": [TEST_KEY, "sk-batch-1111111"],
        "accounts": [{"email": "alice@example.com", "password": "pw-alice-2"},
                     {"token": "batch-token-22222"}]})
    assert reply == {"success": True, "imported_keys": 1, "imported_accounts": 1,
                     "updated_accounts": 1}
    alice = admin.proxy.core.pool.find("alice@example.com")
    assert alice.config.password == "pw-alice-2"
    bad = await admin.call("POST", "/admin/import", json={"accounts": [{"email": "no-at"}]})
    assert bad.status == 400


async def test_queue_status_reports_recommended_concurrency(admin: Admin):
    status = await admin.ok("GET", "/admin/queue/status")
    assert status["total"] == 2 and status["in_use"] == 0
    assert set(status["available_accounts"]) == {"alice@example.com", "bob@example.com"}
    assert status["recommended_concurrency"] == 2 * status["max_inflight_per_account"]


# -- status, plugins, captures ---------------------------------------------------------------------


async def test_plugins_lists_loaded_plugins_and_their_routes(admin: Admin):
    plugins = {p["name"]: p for p in (await admin.ok("GET", "/admin/plugins"))["plugins"]}
    assert plugins["openai"]["loaded"] is True and plugins["openai"]["error"] == ""
    assert "POST /v1/chat/completions" in plugins["openai"]["routes"]
    assert plugins["openai"]["version"]


async def test_overview_counts_requests(admin: Admin):
    before = (await admin.ok("GET", "/admin/overview"))["monitor"]["requests_total"]
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}
    async with admin.http.post(admin.proxy.url + "/v1/chat/completions", json=body,
                               headers=admin.proxy.headers()) as resp:
        assert resp.status == 200
    overview = await admin.ok("GET", "/admin/overview")
    assert overview["monitor"]["requests_total"] == before + 1
    assert overview["queue"]["total"] == 2
    assert {a["identifier"] for a in overview["accounts"]} == {"alice@example.com",
                                                              "bob@example.com"}


async def test_captures_follow_settings_and_clear(admin: Admin):
    listing = await admin.ok("GET", "/admin/dev/captures")
    assert listing == {"enabled": False, "limit": 20, "max_body_bytes": 65536, "items": []}
    await admin.ok("PUT", "/admin/settings", json={"dev_captures": {
        "enabled": True, "limit": 3, "max_body_bytes": 1024}})
    captures = admin.ctx.core.captures
    assert captures is admin.ctx.captures and captures.enabled and captures.limit == 3
    for i in range(4):
        captures.start("GET", f"http://up/{i}", {}, None).finish()
    listing = await admin.ok("GET", "/admin/dev/captures")
    assert [i["url"] for i in listing["items"]] == ["http://up/3", "http://up/2", "http://up/1"]
    assert listing["max_body_bytes"] == 1024
    cleared = await admin.ok("DELETE", "/admin/dev/captures")
    assert cleared == {"success": True, "detail": "capture logs cleared"}
    assert (await admin.ok("GET", "/admin/dev/captures"))["items"] == []


async def test_a_second_server_sees_the_password_set_on_the_first(proxy_factory):
    proxy = await proxy_factory()
    async with aiohttp.ClientSession() as http:
        a = await admin_for(proxy, http)
        await a.ok("POST", "/admin/settings/password", json={"new_password": "shared-secret-1"})
    again = await proxy_factory(json.loads(proxy.config_path.read_text()))
    async with aiohttp.ClientSession() as http:
        assert (await login(http, again.url, "shared-secret-1")).status == 200
        assert (await login(http, again.url, ADMIN_KEY)).status == 401
