"""Bad input to the admin API and the dashboard forms is a clear 4xx, never
a 500 or a dropped connection: nested values, huge page numbers, control
characters, CR/LF in ``back``, oversized flash messages; every bad setting
is named in one answer; a failed import keeps the pasted text and names the
line and column; a message is shown once; a wrong shape or a misspelt
account field is named, never skipped."""

from __future__ import annotations

import re
from typing import Any

import pytest
from admin_util import Admin, admin  # noqa: F401  (fixture)
from test_dashboard_forms import (  # noqa: F401  (fixtures)
    Browserless,
    browser,
    field_block,
    logged_in,
)

from ds2proxy.admin import settings
from ds2proxy.admin.web_session import FLASH_COOKIE


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"n": value}
    return value


@pytest.mark.parametrize("path", ["/admin/config", "/admin/config/import", "/admin/settings",
                                  "/admin/import", "/admin/accounts", "/admin/providers"])
@pytest.mark.parametrize("depth", [3, 40, 300, 900])
async def test_nested_values_in_admin_bodies_are_a_400(admin: Admin, path: str, depth: int):
    before = admin.proxy.store.snapshot()
    method = "PUT" if path == "/admin/settings" else "POST"
    value = nested(depth)
    body = {"/admin/config": {"keys": value, "model_aliases": {"m": value}},
            "/admin/settings": {"model_aliases": value},
            "/admin/config/import": {"upstream": {"base_url": value}},
            "/admin/import": {"accounts": value}, "/admin/accounts": {"email": value},
            "/admin/providers": {"name": "p", "base_url": "http://h/v1", "models": value}}[path]
    reply = await admin.call(method, path, json=body)
    assert reply.status == 400, (depth, reply.raw[:300])
    assert "detail" in reply.json()
    assert admin.proxy.store.snapshot() == before


async def test_a_nested_map_target_is_named_not_echoed(admin: Admin):
    reply = await admin.call("POST", "/admin/config",
                             json={"model_aliases": {"mine": nested(20)}})
    assert reply.status == 400
    assert reply.json() == {"detail": "model_aliases.mine: expected a model name (a string)",
                            "field": "model_aliases.mine",
                            "errors": {"model_aliases.mine": "expected a model name (a string)"}}


@pytest.mark.parametrize("page", ["99999999999999999999", "1000001", "9" * 5000, "-1", "x"])
async def test_absurd_page_numbers_are_a_400(admin: Admin, page: str):
    reply = await admin.call("GET", f"/admin/accounts?page={page}")
    assert reply.status == 400 and reply.json()["field"] == "page"


async def test_huge_page_numbers_on_the_dashboard_fall_back_to_page_one(logged_in: Browserless):
    status, page, _ = await logged_in.get("/admin/ui/accounts?page=99999999999999999999")
    assert status == 200 and 'data-account="alice@example.com"' in page


BAD_LOG_QUERIES = [("page=99999999999999999999999", "page"), ("page=-1", "page"),
                   ("page=0", "page"), ("per_page=0", "per_page"), ("per_page=501", "per_page"),
                   ("page=%C2%B2", "page"), ("page=%EF%BC%91", "page"),
                   ("per_page=" + "9" * 5000, "per_page"),
                   ("status=%C2%B2", "status"), ("status=99999999999999999999999", "status"),
                   ("status=42", "status")]


@pytest.mark.parametrize("query,field", BAD_LOG_QUERIES)
async def test_bad_request_log_parameters_are_a_400_naming_them(admin: Admin, query: str,
                                                                 field: str):
    reply = await admin.call("GET", f"/admin/usage/requests?{query}")
    assert reply.status == 400, reply.raw[:300]
    assert reply.json()["field"] == field


@pytest.mark.parametrize("row", ["%C2%B2", "99999999999999999999999", "-1", "9" * 5000])
async def test_a_request_log_row_id_that_cannot_exist_is_a_404(admin: Admin,
                                                               logged_in: Browserless,
                                                               row: str):
    assert (await admin.call("GET", f"/admin/usage/requests/{row}")).status == 404
    status, _, _ = await logged_in.get(f"/admin/ui/usage/{row}")
    assert status == 404


@pytest.mark.parametrize("query", [q for q, _ in BAD_LOG_QUERIES])
async def test_bad_request_log_parameters_on_the_dashboard_show_the_first_page(
        logged_in: Browserless, query: str):
    status, page, _ = await logged_in.get(f"/admin/ui/usage?{query}")
    assert status == 200 and "page 1 of 1" in page


@pytest.mark.parametrize("field,value", [("expires_days", "99999999999999999999999"),
                                         ("expires_days", "\u00b2"), ("rpm", "\u00b2"),
                                         ("rpm", "-5"), ("concurrent", "1" + "0" * 13)])
async def test_bad_numbers_in_the_key_form_come_back_as_a_message(logged_in: Browserless,
                                                                 field: str, value: str):
    before = logged_in.proxy.store.snapshot()
    status, _, resp = await logged_in.post("/admin/ui/keys/create",
                                           {"name": "numbers", field: value})
    assert status == 303 and resp.headers["Location"] == "/admin/ui/keys"
    _, page, _ = await logged_in.get("/admin/ui/keys")
    assert f"{field} must be a whole number" in page
    assert logged_in.proxy.store.snapshot() == before


@pytest.mark.parametrize("api_key", ["test\x00key", "test\r\nkey", "two words"])
async def test_self_test_refuses_control_characters_in_the_key(admin: Admin, api_key: str):
    reply = await admin.call("POST", "/admin/test", json={"api_key": api_key})
    assert reply.status == 400 and reply.json()["field"] == "api_key"


# -- dashboard forms ------------------------------------------------------------------------


async def test_dashboard_import_of_non_ascii_text(logged_in: Browserless):
    text = '{"model_aliases": {"模型-ü": "deepseek-chat"}, "keys": ["sk-ünïcode-key"]}'
    status, _, _ = await logged_in.post("/admin/ui/config/import",
                                        {"config_text": text, "mode": "merge"})
    assert status == 303
    config = logged_in.proxy.core.config
    assert config.model_aliases["模型-ü"] == "deepseek-chat"
    assert "sk-ünïcode-key" in config.key_secrets
    status, page, _ = await logged_in.post("/admin/ui/config/import",
                                           {"config_text": "ünïcödé ✓", "mode": "merge"})
    assert status == 400 and "neither JSON nor base64" in page
    assert "ünïcödé ✓</textarea>" in page


async def test_import_error_keeps_the_text_and_names_line_and_column(logged_in: Browserless):
    text = '{\n  "keys": [\n    "sk-a"\n    "sk-b"\n  ]\n}'
    before = logged_in.proxy.store.snapshot()
    status, page, _ = await logged_in.post("/admin/ui/config/import",
                                           {"config_text": text, "mode": "replace"})
    assert status == 400
    assert "line 4, column 5" in page
    assert text.replace('"', "&#34;") + "</textarea>" in page
    assert re.search(r'value="replace" checked', page)
    status, page, _ = await logged_in.post("/admin/ui/config/import", {
        "config_text": '{"runtime": {"account_max_inflight": 0}}', "mode": "merge"})
    assert status == 400 and "runtime.account_max_inflight" in page
    assert "account_max_inflight&#34;: 0}}</textarea>" in page
    assert logged_in.proxy.store.snapshot() == before


async def test_import_api_names_line_and_column_of_bad_json(admin: Admin):
    async with admin.http.post(f"{admin.proxy.url}/admin/config/import",
                               data=b'{"keys": ["a" \n "b"]}', headers={
                                   "Authorization": f"Bearer {admin.token}",
                                   "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert "line 2 column 2" in (await resp.json())["detail"]


@pytest.mark.parametrize("back", ["/admin/ui/keys\r\nSet-Cookie: evil=1", "/admin/ui/keys\n",
                                  "https://evil.example/admin", "//evil.example",
                                  "/admin\\..\\evil", "/administrator"])
async def test_a_bad_back_field_falls_back_to_the_page_and_applies_once(
        logged_in: Browserless, back: str):
    status, _, resp = await logged_in.post("/admin/ui/keys/add",
                                           {"key": "sk-back-test-1", "back": back})
    assert status == 303 and resp.headers["Location"] == "/admin/ui/keys"
    assert "evil" not in str(resp.headers)
    assert logged_in.proxy.core.config.key_secrets.count("sk-back-test-1") == 1
    status, _, resp = await logged_in.post("/admin/ui/accounts/add",
                                           {"login": "x@example.com", "back": back})
    assert status == 303 and resp.headers["Location"] == "/admin/ui/accounts"


async def test_a_long_identifier_makes_a_small_flash_cookie(logged_in: Browserless):
    identifier = "a" * 6000 + "@example.com"
    status, _, resp = await logged_in.post("/admin/ui/accounts/delete",
                                           {"identifier": identifier})
    assert status == 303
    cookie = resp.cookies[logged_in.cookie(FLASH_COOKIE)]
    assert len(cookie.OutputString()) < 2048
    _, page, _ = await logged_in.get("/admin/ui/accounts")
    assert "no account aaaa" in page and "…" in page


async def test_a_message_is_shown_once(logged_in: Browserless):
    await logged_in.post("/admin/ui/keys/add", {"key": "sk-shown-once-1"})
    _, page, _ = await logged_in.get("/admin/ui/keys")
    assert 'id="flash"' in page and "API key added" in page
    for path in ("/admin/ui/keys", "/admin/ui/settings", "/admin/"):
        _, page, _ = await logged_in.get(path)
        assert 'id="flash"' not in page, path


# -- every bad setting in one answer ----------------------------------------------------------


def valid_settings_form(page: str) -> dict[str, str]:
    """The settings form as the page fills it in (numbers and text), plus choices."""
    form = {p: re.search(rf'name="{re.escape(p)}" value="([^"]*)"', page).group(1)
            for p, s in settings.SETTINGS.items() if s.kind in ("int", "float", "text")}
    form.update({"toolcall.mode": "feature_match", "toolcall.early_emit_confidence": "high",
                 "search.citation_style": "raw", "embeddings.provider": "testing",
                 "upstream.session_cleanup": "none", "auth.allow_passthrough": "on"})
    return form


async def test_settings_form_flags_every_bad_field_at_once(logged_in: Browserless):
    _, page, _ = await logged_in.get("/admin/ui/settings")
    bad = {"runtime.account_max_inflight": "0", "runtime.global_max_inflight": "lots",
           "dev_captures.limit": "5000", "model_aliases": "mine = not-a-model",
           "history_file.file_name": "a/b.txt"}
    before = logged_in.proxy.store.snapshot()
    status, page, _ = await logged_in.post("/admin/ui/settings",
                                           {**valid_settings_form(page), **bad})
    assert status == 400
    for path in bad:
        assert "has-error" in field_block(page, path), path
    assert "has-error" not in field_block(page, "runtime.queue_timeout_seconds")
    assert logged_in.proxy.store.snapshot() == before


async def test_settings_api_names_every_bad_field_at_once(admin: Admin):
    before = admin.proxy.store.snapshot()
    reply = await admin.call("PUT", "/admin/settings", json={
        "runtime": {"account_max_inflight": 0, "queue_timeout_seconds": "soon"},
        "dev_captures": {"limit": 5000}, "model_aliases": {"mine": "not-a-model"},
        "responses": {"store_ttl_seconds": 60}})
    assert reply.status == 400
    errors = reply.json()["errors"]
    assert set(errors) == {"runtime.account_max_inflight", "runtime.queue_timeout_seconds",
                           "dev_captures.limit", "model_aliases.mine"}
    assert "between 1 and 64" in errors["runtime.account_max_inflight"]
    assert admin.proxy.store.snapshot() == before


async def test_dashboard_import_warns_about_misspelt_fields(logged_in: Browserless):
    status, _, _ = await logged_in.post("/admin/ui/config/import", {
        "config_text": '{"runtime": {"acount_max_inflight": 3}}', "mode": "merge"})
    assert status == 303
    _, page, _ = await logged_in.get("/admin/ui/config")
    assert "flash-info" in page
    assert "did you mean &#39;runtime.account_max_inflight&#39;?" in page


@pytest.mark.parametrize("path,body", [
    ("/admin/keys", {"key": "sk-bad\x00key"}),
    ("/admin/keys", {"key": "sk-bad\r\nkey"}),
    ("/admin/import", {"keys": ["sk-two words"]}),
    ("/admin/config", {"keys": ["sk-ok-1", "sk-tab\tkey"]}),
    ("/admin/config/import", {"keys": ["sk-bell\x07"]}),
    ("/admin/config/import", {"mode": "replace", "config": {"keys": ["sk-nul\x00"]}}),
])
async def test_keys_that_cannot_travel_in_a_header_are_refused(admin: Admin, path: str,
                                                               body: dict):
    before = admin.proxy.store.snapshot()
    reply = await admin.call("POST", path, json=body)
    assert reply.status == 400 and "control characters" in reply.json()["detail"]
    assert admin.proxy.store.snapshot() == before


# -- bodies that cannot be decoded ----------------------------------------------------------

FORM = "application/x-www-form-urlencoded"
UNDECODABLE_FORMS = [
    ({"Content-Type": f"{FORM}; charset=bogus"}, b"key=a%FF"),
    ({"Content-Type": f"{FORM}; charset=utf-16"}, b"key=a"),
    ({"Content-Type": "multipart/form-data; boundary=zz"}, b"garbage"),
    ({"Content-Type": "multipart/form-data"}, b"garbage"),
    ({"Content-Type": "multipart/form-data; boundary=zz"},
     b"--zz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--zz--\r\n"),
    ({"Content-Type": FORM, "Content-Encoding": "gzip"}, b"not gzip at all"),
]


@pytest.mark.parametrize("headers, body", UNDECODABLE_FORMS,
                         ids=["charset", "utf-16", "no-boundary-found", "no-boundary",
                              "unnamed-part", "gzip"])
@pytest.mark.parametrize("path", ["/admin/ui/login", "/admin/ui/keys/add"])
async def test_an_undecodable_form_is_a_400_page(logged_in: Browserless, caplog, path: str,
                                                  headers: dict, body: bytes):
    async with logged_in.http.post(logged_in.url(path), data=body, headers=headers,
                                   allow_redirects=False) as resp:
        assert resp.status == 400, resp.status
        assert "could not be read" in await resp.text()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


LARGE_UNDECODABLE_FORMS = [
    # a part header line longer than aiohttp reads (512 KB) was a 500
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="pad' + b"x" * (600 << 10) + b"\r\n"),
    # split off the loop: its charset is looked up in the worker thread
    (f"{FORM}; charset=bogus", b"key=a%FF&pad=" + b"x" * (600 << 10)),
    (FORM, b"key=a&pad=" + b"\xff" * (600 << 10)),
]


@pytest.mark.parametrize("content_type, body", LARGE_UNDECODABLE_FORMS,
                         ids=["endless-part-header", "bogus-charset", "not-utf8"])
async def test_a_large_undecodable_form_is_a_400_page(logged_in: Browserless, caplog,
                                                      content_type: str, body: bytes):
    async with logged_in.http.post(logged_in.url("/admin/ui/keys/add"), data=body,
                                   headers={"Content-Type": content_type},
                                   allow_redirects=False) as resp:
        page = await resp.text()
        assert resp.status == 400 and "could not be read" in page, (resp.status, page[:300])
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_an_undecodable_admin_json_body_is_a_400(admin: Admin, caplog):
    async with admin.http.post(f"{admin.proxy.url}/admin/keys", data=b"not gzip", headers={
            "Authorization": f"Bearer {admin.token}", "Content-Type": "application/json",
            "Content-Encoding": "gzip"}) as resp:
        assert resp.status == 400 and "could not be read" in (await resp.json())["detail"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# -- wrong shapes and unknown fields are named, never skipped ----------------------------------


@pytest.mark.parametrize("path, body, field", [
    ("/admin/config/import", {"keys": "sk-not-a-list"}, "keys"),
    ("/admin/config/import", {"accounts": {"email": "a@b.c", "password": "p"}}, "accounts"),
    ("/admin/config/import", {"accounts": [{"email": "new@b.c", "password": "p"}, "x"]},
     "accounts[1]"),
    ("/admin/config/import", {"keys": ["sk-fine-key-1", 5]}, "key"),
    ("/admin/config/import", {"keys": [{"id": "no-such-id"}]}, "keys"),
    ("/admin/accounts", {"email": "new@b.c", "password": "p", "proxyy": "http://h:1"}, "proxyy"),
    ("/admin/import", {"accounts": [{"email": "new@b.c", "pasword": "p"}]}, "pasword"),
])
async def test_an_import_or_add_with_a_wrong_shape_is_a_400(admin: Admin, path: str, body: dict,
                                                             field: str):
    before = admin.proxy.config_path.read_bytes()
    reply = await admin.call("POST", path, json=body)
    assert reply.status == 400 and reply.json()["field"] == field, reply.raw
    assert admin.proxy.config_path.read_bytes() == before


async def test_a_misspelt_account_field_names_the_right_one(admin: Admin):
    reply = await admin.call("POST", "/admin/accounts", json={
        "email": "new@b.c", "password": "p", "proxyy": "socks5://h:1080"})
    assert reply.json()["detail"] == "unknown account field 'proxyy' (did you mean 'proxy'?)"


@pytest.mark.parametrize("name", [".", ".."])
async def test_a_history_file_name_is_not_a_folder(admin: Admin, name: str):
    reply = await admin.call("PUT", "/admin/settings", json={"history_file": {"file_name": name}})
    assert reply.status == 400 and reply.json()["field"] == "history_file.file_name"


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz", "text/html"])
@pytest.mark.parametrize("method, path", [
    ("POST", "/admin/login"), ("PUT", "/admin/settings"), ("POST", "/admin/config/import"),
    ("POST", "/admin/keys"), ("POST", "/admin/accounts")])
async def test_an_admin_body_not_labelled_json_is_a_415(admin: Admin, method: str, path: str,
                                                        content_type: str):
    """What a page elsewhere can send without a preflight is never read as JSON."""
    before = admin.proxy.config_path.read_bytes()
    body = {"/admin/login": b'{"admin_key": "test-admin-key"}',
            "/admin/settings": b'{"runtime": {"account_max_inflight": 7}}',
            "/admin/config/import": b'{"keys": ["sk-smuggled-key-1"]}',
            "/admin/keys": b'{"name": "smuggled"}',
            "/admin/accounts": b'{"email": "x@y.z", "password": "p"}'}[path]
    async with admin.http.request(method, admin.proxy.url + path, data=body, headers={
            "Authorization": f"Bearer {admin.token}", "Content-Type": content_type}) as resp:
        assert resp.status == 415, await resp.read()
        assert "application/json" in (await resp.json())["detail"]
    assert admin.proxy.config_path.read_bytes() == before


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8",
                                          "application/merge-patch+json"])
async def test_json_and_unlabelled_admin_bodies_are_read(admin: Admin, content_type: str | None):
    headers = {"Authorization": f"Bearer {admin.token}"}
    if content_type:
        headers["Content-Type"] = content_type
    async with admin.http.put(admin.proxy.url + "/admin/settings", headers=headers,
                              data=b'{"runtime": {"account_max_inflight": 7}}',
                              skip_auto_headers=["Content-Type"]) as resp:
        assert resp.status == 200, await resp.read()
    assert admin.proxy.core.pool.limits.per_account == 7


async def test_an_imported_field_name_cannot_forge_a_log_line(admin: Admin, caplog):
    name = "bogus\n2026-01-01 00:00:00 ERROR ds2proxy: forged"
    reply = await admin.call("POST", "/admin/config/import", json={name: 1})
    assert reply.status == 200
    assert reply.json()["warnings"] == [
        "unknown config field 'bogus\\n2026-01-01 00:00:00 ERROR ds2proxy: forged'; "
        "it is kept but ignored"]
    logged = [r.getMessage() for r in caplog.records if "unknown config field" in r.getMessage()]
    assert logged and not [m for m in logged if "\n" in m]
