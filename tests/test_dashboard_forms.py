"""The dashboard without a browser: pages, login, session cookie, CSRF,
no-JavaScript forms (post / redirect / get) and the playground relay."""

from __future__ import annotations

import hashlib
import json
import re
import time
from html.parser import HTMLParser
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from ds2proxy.keyring import secret_of
from admin_util import admin_for
from conftest import ADMIN_KEY, Proxy, ProxyFactory

from ds2proxy.admin import ADMIN, settings

PAGES = ["/admin/", "/admin/ui/accounts", "/admin/ui/keys", "/admin/ui/settings",
         "/admin/ui/config", "/admin/ui/playground", "/admin/ui/captures",
         "/admin/ui/plugins"]


@dataclass
class Browserless:
    """A cookie-keeping HTTP client that fills in the dashboard's forms."""

    proxy: Proxy
    http: aiohttp.ClientSession
    csrf: str = ""

    def url(self, path: str) -> str:
        return self.proxy.url + path

    def cookie(self, base: str) -> str:
        """A dashboard cookie's name on this server (the port is part of it)."""
        return f"{base}_{self.proxy.server.port}"

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.url(path), allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp

    async def post(self, path: str, data: dict, *, csrf: bool = True
                   ) -> tuple[int, str, aiohttp.ClientResponse]:
        form = {"csrf_token": self.csrf, **data} if csrf else data
        async with self.http.post(self.url(path), data=form, allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp

    async def log_in(self, key: str = ADMIN_KEY) -> aiohttp.ClientResponse:
        _, page, _ = await self.get("/admin/ui/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
        status, _, resp = await self.post("/admin/ui/login", {
            "login_token": token, "admin_key": key, "next": "/admin/"}, csrf=False)
        assert status == 303, status
        _, home, _ = await self.get("/admin/")
        self.csrf = re.search(r'name="csrf_token" value="([^"]+)"', home).group(1)
        return resp


@pytest.fixture
async def browser(proxy: Proxy) -> AsyncIterator[Browserless]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Browserless(proxy, http)


@pytest.fixture
async def logged_in(browser: Browserless) -> Browserless:
    await browser.log_in()
    return browser


def field_block(html: str, path: str) -> str:
    """The settings form's block for one field."""
    start = html.index(f'data-field="{path}"')
    return html[html.rindex("<div", 0, start): html.index('<div class="help">', start)]


# -- login and session --------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
async def test_pages_send_strangers_to_the_login_page(browser: Browserless, path):
    status, _, resp = await browser.get(path)
    assert status == 303
    assert resp.headers["Location"] == f"/admin/ui/login?next={path}"


@pytest.mark.parametrize("path", ["/admin/ui/usage?model=deepseek-chat&errors=1&page=2",
                                  "/admin/ui/keys/a%3Fb"])
async def test_login_returns_to_the_page_with_its_query(browser: Browserless, path: str):
    _, _, resp = await browser.get(path)
    _, page, _ = await browser.get(resp.headers["Location"])
    assert f'name="next" value="{path.replace("&", "&amp;")}"' in page
    token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
    status, _, resp = await browser.post("/admin/ui/login", {
        "login_token": token, "admin_key": ADMIN_KEY, "next": path}, csrf=False)
    assert status == 303 and resp.headers["Location"] == path


@pytest.mark.parametrize("form, referer, back", [
    ("/admin/ui/keys/add", "", "/admin/ui/keys"),
    ("/admin/ui/accounts/add", "/admin/ui/accounts?q=alice&page=1",
     "/admin/ui/accounts?q=alice&page=1"),
    ("/admin/ui/providers/add", "http://elsewhere.example/admin/ui/keys", "/admin/ui/providers"),
])
async def test_a_form_sent_after_the_session_lapsed_returns_to_its_page_after_login(
        browser: Browserless, form: str, referer: str, back: str):
    """The login page sent the admin on to the form's own address, which has
    no page: a bare 404 or 405 after logging in again."""
    headers = {"Referer": browser.url(referer) if referer.startswith("/") else referer}
    async with browser.http.post(browser.url(form), data={"key": "sk-lapsed-000001"},
                                 headers=headers if referer else {},
                                 allow_redirects=False) as resp:
        assert resp.status == 303
        login_url = resp.headers["Location"]
    _, page, _ = await browser.get(login_url)
    target = re.search(r'name="next" value="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert target == back
    token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
    await browser.post("/admin/ui/login", {"login_token": token, "admin_key": ADMIN_KEY,
                                           "next": target}, csrf=False)
    status, _, _ = await browser.get(target)
    assert status == 200
    assert "sk-lapsed-000001" not in browser.proxy.core.config.key_secrets


async def test_login_sets_a_strict_httponly_session_cookie(browser: Browserless):
    resp = await browser.log_in()
    assert resp.headers["Location"] == "/admin/"
    cookie = resp.cookies[browser.cookie("ds2proxy_admin")]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/admin"
    assert int(cookie["max-age"]) == 24 * 3600
    assert not cookie["secure"]  # plain HTTP: a Secure cookie would never come back


@pytest.mark.parametrize("tls_header", [
    {"X-Forwarded-Proto": "https"}, {"X-Forwarded-Proto": "HTTPS, http"},
    {"Forwarded": "for=10.0.0.1;proto=https;host=a.example"},
    # RFC 7239 lets every value be a quoted string; an IPv6 'for' must be one.
    {"Forwarded": 'for="[2001:db8::1]:4711"; proto="https"'},
    {"X-Forwarded-Ssl": "on"}, {"X-Forwarded-Scheme": "https"}])
async def test_behind_a_tls_proxy_every_dashboard_cookie_is_secure(proxy: Proxy,
                                                                   tls_header: dict):
    port = proxy.server.port
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(proxy.url + "/admin/ui/login", headers=tls_header) as resp:
            page, login_cookie = await resp.text(), resp.cookies[f"ds2proxy_login_{port}"]
        token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
        async with http.post(proxy.url + "/admin/ui/login", allow_redirects=False, data={
                "login_token": token, "admin_key": ADMIN_KEY, "next": "/admin/"}, headers={
                **tls_header, "Cookie": f"ds2proxy_login_{port}={token}"}) as resp:
            assert resp.status == 303
            session = resp.cookies[f"ds2proxy_admin_{port}"]
    assert login_cookie["secure"] and session["secure"] and session["httponly"]


async def test_login_needs_its_form_token_and_the_right_key(browser: Browserless):
    status, page, _ = await browser.post("/admin/ui/login", {"admin_key": ADMIN_KEY}, csrf=False)
    assert status == 403 and "security token" in page
    _, page, _ = await browser.get("/admin/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
    status, page, _ = await browser.post("/admin/ui/login", {"login_token": token,
                                                             "admin_key": "nope"}, csrf=False)
    assert status == 401 and 'id="login-error"' in page and "invalid admin key" in page
    assert (await browser.get("/admin/"))[0] == 303


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    """``data`` sent without a Content-Length (chunked), in 64 KB pieces."""
    for start in range(0, len(data), 1 << 16):
        yield data[start:start + (1 << 16)]


@pytest.mark.parametrize("chunked", [False, True])
async def test_the_login_form_is_read_up_to_a_few_kilobytes(browser: Browserless, chunked):
    """Anyone may post the login form, and it was parsed up to the admin's
    8 MB limit before its token was checked: a stranger's 7 MB multipart
    login held the event loop for a third of a second, every request."""
    _, page, _ = await browser.get("/admin/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
    data = (b"--b\r\nContent-Disposition: form-data; name=\"login_token\"\r\n\r\n"
            + token.encode() + b"\r\n--b\r\nContent-Disposition: form-data; "
            b"name=\"admin_key\"\r\n\r\n" + b"k" * (200 << 10) + b"\r\n--b--\r\n")
    async with browser.http.post(browser.url("/admin/ui/login"),
                                 data=_chunked(data) if chunked else data,
                                 headers={"Content-Type": "multipart/form-data; boundary=b"},
                                 allow_redirects=False) as resp:
        assert resp.status == 413, await resp.text()
        assert "16384-byte limit" in await resp.text()
    assert browser.proxy.app[ADMIN].gate.throttle.failures("127.0.0.1") == 0
    async with browser.http.post(browser.url("/admin/login"),
                                 json={"admin_key": "k" * (200 << 10)}) as resp:
        assert resp.status == 413
    await browser.log_in()  # a real one still gets in


async def test_a_mistyped_key_keeps_the_page_the_login_was_for(browser: Browserless):
    """The form came back after a wrong key with next=/admin/: the page the
    admin had asked for (a filtered request log) was lost at the first typo."""
    _, page, _ = await browser.get("/admin/ui/login?next=/admin/ui/usage%3Fmodel%3Dx")
    token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
    form = {"login_token": token, "next": "/admin/ui/usage?model=x"}
    status, page, _ = await browser.post("/admin/ui/login", {**form, "admin_key": "typo"},
                                         csrf=False)
    assert status == 401 and 'name="next" value="/admin/ui/usage?model=x"' in page
    status, page, _ = await browser.post("/admin/ui/login", {
        "login_token": token, "admin_key": "typo", "next": "//evil.example/"}, csrf=False)
    assert status == 401 and 'name="next" value="/admin/"' in page  # still never off site
    status, _, resp = await browser.post("/admin/ui/login", {**form, "admin_key": ADMIN_KEY},
                                         csrf=False)
    assert status == 303 and resp.headers["Location"] == "/admin/ui/usage?model=x"


async def test_a_key_pasted_with_a_line_break_logs_in_on_the_form_as_in_the_api(
        browser: Browserless):
    """The JSON login trims the key; the form did not, so a key pasted from
    a terminal with its line break was 'invalid' there, and counted as a guess."""
    await browser.log_in(f" {ADMIN_KEY}\n")
    assert browser.proxy.app[ADMIN].gate.throttle.failures("127.0.0.1") == 0


async def test_login_never_redirects_off_site(browser: Browserless):
    _, page, _ = await browser.get("/admin/ui/login?next=//evil.example/")
    assert 'name="next" value="/admin/"' in page


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_renders_with_security_headers(logged_in: Browserless, path):
    status, page, resp = await logged_in.get(path)
    assert status == 200, page[:500]
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert 'aria-current="page"' in page and 'id="logout"' in page
    assert "default-key-banner" not in page


async def test_default_key_banner_shows_until_a_password_is_set(proxy_factory):
    proxy = await proxy_factory(admin_key="")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        b = Browserless(proxy, http)
        assert "default-key-banner" in (await b.get("/admin/ui/login"))[1]
        await b.log_in("admin")
        assert "default-key-banner" in (await b.get("/admin/"))[1]
        status, _, _ = await b.post("/admin/ui/settings/password", {
            "current_password": "admin", "new_password": "a-good-password",
            "confirm_password": "a-good-password"})
        assert status == 303
        _, page, _ = await b.get("/admin/ui/settings")
        assert "default-key-banner" not in page and "Password changed" in page


async def test_logout_ends_the_session_for_good(logged_in: Browserless):
    token = next(c.value for c in logged_in.http.cookie_jar
                 if c.key == logged_in.cookie("ds2proxy_admin"))
    status, _, resp = await logged_in.post("/admin/ui/logout", {})
    assert status == 303 and resp.headers["Location"] == "/admin/ui/login"
    assert (await logged_in.get("/admin/"))[0] == 303
    async with logged_in.http.get(logged_in.url("/admin/config"),
                                  headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.status == 401


# -- CSRF --------------------------------------------------------------------------------------


async def test_a_form_post_without_its_csrf_token_is_refused(logged_in: Browserless):
    keys_before = logged_in.proxy.core.config.key_secrets
    status, page, _ = await logged_in.post("/admin/ui/keys/add", {"key": "sk-csrf-000000"},
                                           csrf=False)
    assert status == 403 and 'id="error-message"' in page
    logged_in_csrf = logged_in.csrf
    logged_in.csrf = "0" * 40
    assert (await logged_in.post("/admin/ui/keys/add", {"key": "sk-csrf-000000"}))[0] == 403
    assert logged_in.proxy.core.config.key_secrets == keys_before
    logged_in.csrf = logged_in_csrf
    assert (await logged_in.post("/admin/ui/keys/add", {"key": "sk-csrf-000000"}))[0] == 303
    assert "sk-csrf-000000" in logged_in.proxy.core.config.key_secrets


async def test_every_write_refuses_a_session_without_its_csrf_token(logged_in: Browserless):
    """Every dashboard form and every admin write the session cookie reaches,
    found from the router (so a route added later is covered too): without
    the form token or the X-CSRF-Token header, or with a stale one, it is a
    403 and the config is as it was."""
    routes = [(r.method, re.sub(r"\{\w+\}", "x", r.resource.canonical.replace(
                  "{action}", "disable")))
              for r in logged_in.proxy.app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/admin")
              and r.method not in ("GET", "HEAD")
              and r.resource.canonical not in ("/admin/login", "/admin/ui/login")]
    assert len(routes) > 40
    before = logged_in.proxy.store.snapshot()
    fields = {"key": "sk-csrf-sweep-0001", "name": "csrf", "identifier": "alice@example.com",
              "new_password": "a-good-password", "confirm_password": "a-good-password"}
    for method, path in routes:
        for token in ("", "0" * 40):
            if path.startswith("/admin/ui/"):
                async with logged_in.http.post(logged_in.url(path), allow_redirects=False,
                                               data={**fields, "csrf_token": token}) as resp:
                    status = resp.status
            else:
                async with logged_in.http.request(method, logged_in.url(path), json=fields,
                                                  headers={"X-CSRF-Token": token}) as resp:
                    status = resp.status
            assert status == 403, (method, path, token, status)
    assert logged_in.proxy.store.snapshot() == before


async def test_the_json_api_takes_the_session_cookie_only_with_the_csrf_header(
        logged_in: Browserless):
    async with logged_in.http.get(logged_in.url("/admin/overview")) as resp:
        assert resp.status == 200
    body = {"key": "sk-cookie-000000"}
    async with logged_in.http.post(logged_in.url("/admin/keys"), json=body) as resp:
        assert resp.status == 403 and "detail" in await resp.json()
    async with logged_in.http.post(logged_in.url("/admin/keys"), json=body,
                                   headers={"X-CSRF-Token": logged_in.csrf}) as resp:
        assert resp.status == 200


# -- forms ---------------------------------------------------------------------------------------


def settings_form(page: str) -> dict[str, str]:
    """The settings form as the page fills it: every number as shown, the
    choices and text fields set to known values."""
    values = {p: re.search(rf'name="{re.escape(p)}" value="([^"]*)"', page).group(1)
              for p, s in settings.SETTINGS.items() if s.kind in ("int", "float")}
    return {**values, "toolcall.mode": "feature_match", "toolcall.early_emit_confidence": "high",
            "search.citation_style": "raw", "embeddings.provider": "testing",
            "upstream.session_cleanup": "none",
            "auth.allow_passthrough": "on", "claude_mapping": "", "model_aliases": ""}


async def test_settings_form_applies_and_explains_a_bad_value_beside_its_field(
        logged_in: Browserless):
    pool = logged_in.proxy.core.pool
    _, page, _ = await logged_in.get("/admin/ui/settings")
    form = settings_form(page)
    before = pool.limits
    status, page, _ = await logged_in.post("/admin/ui/settings",
                                           {**form, "runtime.account_max_inflight": "0"})
    assert status == 400
    block = field_block(page, "runtime.account_max_inflight")
    assert "has-error" in block and "must be between 1 and 64" in block
    assert "has-error" not in field_block(page, "runtime.global_max_inflight")
    assert pool.limits == before
    status, page, _ = await logged_in.post("/admin/ui/settings", {
        **form, "runtime.account_max_inflight": "4", "model_aliases": "house = deepseek-chat"})
    assert status == 303
    assert pool.limits.per_account == 4
    assert logged_in.proxy.core.models.resolve("house").native == "deepseek-chat"
    _, page, _ = await logged_in.get("/admin/ui/settings")
    assert 'name="runtime.account_max_inflight" value="4"' in page
    assert "Settings saved" in page


async def test_settings_form_edits_the_history_file_text_setting(logged_in: Browserless):
    _, page, _ = await logged_in.get("/admin/ui/settings")
    assert 'name="history_file.file_name" value="HISTORY.txt"' in page
    form = {p: re.search(rf'name="{re.escape(p)}" value="([^"]*)"', page).group(1)
            for p, s in settings.SETTINGS.items() if s.kind in ("int", "float", "text")}
    form.update({"toolcall.mode": "feature_match", "toolcall.early_emit_confidence": "high",
                 "search.citation_style": "raw", "embeddings.provider": "testing",
                 "upstream.session_cleanup": "none",
                 "auth.allow_passthrough": "on", "history_file.enabled": "on"})
    status, page, _ = await logged_in.post("/admin/ui/settings",
                                           {**form, "history_file.file_name": "a/b.txt"})
    assert status == 400
    assert "without folders" in field_block(page, "history_file.file_name")
    assert 'value="a/b.txt"' in field_block(page, "history_file.file_name")
    assert logged_in.proxy.core.config.history_file.enabled is False
    status, _, _ = await logged_in.post("/admin/ui/settings",
                                        {**form, "history_file.file_name": "LOG.txt"})
    assert status == 303
    assert logged_in.proxy.core.config.history_file.enabled is True
    assert logged_in.proxy.core.config.history_file.file_name == "LOG.txt"
    _, page, _ = await logged_in.get("/admin/ui/settings")
    assert 'name="history_file.file_name" value="LOG.txt"' in page


async def test_settings_form_reports_unparsable_input(logged_in: Browserless):
    status, page, _ = await logged_in.post("/admin/ui/settings", {
        "runtime.account_max_inflight": "many", "model_aliases": "just words"})
    assert status == 400
    assert "must be a whole number" in field_block(page, "runtime.account_max_inflight")
    assert "name = model" in field_block(page, "model_aliases")


async def test_password_form_checks_the_repeat(logged_in: Browserless):
    status, page, _ = await logged_in.post("/admin/ui/settings/password", {
        "current_password": ADMIN_KEY, "new_password": "first-password",
        "confirm_password": "second-password"})
    assert status == 400 and "the two passwords differ" in page
    assert "password_hash" not in logged_in.proxy.store.snapshot().get("admin", {})


@pytest.mark.parametrize("current, status, problem", [
    ("", 400, "enter the current password"),
    ("not-the-admin-key", 403, "is not the admin password")])
async def test_password_form_asks_for_the_current_password(
        logged_in: Browserless, current: str, status: int, problem: str):
    """A dashboard left logged in (a shared machine, a stolen session
    cookie) was enough to set a new password and lock the admin out."""
    code, page, _ = await logged_in.post("/admin/ui/settings/password", {
        "current_password": current, "new_password": "a-good-password",
        "confirm_password": "a-good-password"})
    assert code == status and problem in page
    assert 'id="current_password"' in page and "not-the-admin-key" not in page
    assert "Nothing was saved" not in page  # that banner is the settings form's
    assert "password_hash" not in logged_in.proxy.store.snapshot().get("admin", {})


async def test_password_form_changes_it_with_the_current_one(logged_in: Browserless):
    code, _, _ = await logged_in.post("/admin/ui/settings/password", {
        "current_password": ADMIN_KEY, "new_password": "a-good-password",
        "confirm_password": "a-good-password"})
    assert code == 303
    _, page, _ = await logged_in.get("/admin/ui/settings")
    assert "Password changed" in page
    logged_in.csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    code, page, _ = await logged_in.post("/admin/ui/settings/password", {
        "current_password": ADMIN_KEY, "new_password": "a-third-password",
        "confirm_password": "a-third-password"})  # the start-up key no longer counts
    assert code == 403 and "is not the admin password" in page


async def test_password_form_refuses_a_password_with_surrounding_spaces(
        logged_in: Browserless):
    """It would open this form's login only, never the API's (see test_admin_api)."""
    status, page, _ = await logged_in.post("/admin/ui/settings/password", {
        "current_password": ADMIN_KEY, "new_password": "a-padded-password ",
        "confirm_password": "a-padded-password "})
    assert status == 400 and "must not begin or end with a space" in page
    assert "password_hash" not in logged_in.proxy.store.snapshot().get("admin", {})


async def test_account_forms_add_test_and_delete(logged_in: Browserless):
    status, _, resp = await logged_in.post("/admin/ui/accounts/add", {
        "login": "dave@example.com", "password": "pw-dave"})
    assert status == 303 and resp.headers["Location"] == "/admin/ui/accounts"
    _, page, _ = await logged_in.get("/admin/ui/accounts")
    assert 'data-account="dave@example.com"' in page and "dave@example.com added" in page
    assert "pw-dave" not in page
    await logged_in.post("/admin/ui/accounts/test", {"identifier": "alice@example.com"})
    _, page, _ = await logged_in.get("/admin/ui/accounts")
    assert "alice@example.com works" in page and "OK ·" in page
    await logged_in.post("/admin/ui/accounts/test-all", {})
    _, page, _ = await logged_in.get("/admin/ui/accounts")
    assert "2 of 3 accounts passed" in page  # dave is unknown upstream
    status, _, _ = await logged_in.post("/admin/ui/accounts/delete",
                                        {"identifier": "dave@example.com"})
    assert status == 303
    assert logged_in.proxy.core.pool.find("dave@example.com") is None


async def test_bad_form_input_comes_back_as_a_message(logged_in: Browserless):
    status, _, resp = await logged_in.post("/admin/ui/accounts/add", {
        "login": "erin@example.com", "back": "/admin/ui/accounts?page=1"})
    assert status == 303 and resp.headers["Location"] == "/admin/ui/accounts?page=1"
    _, page, _ = await logged_in.get("/admin/ui/accounts?page=1")
    assert 'class="flash flash-error"' in page and "password" in page


async def test_batch_import_form(logged_in: Browserless):
    status, _, _ = await logged_in.post("/admin/ui/accounts/import", {
        "accounts": "frank@example.com:pw-frank\n13900000000:pw-mobile\nraw-token-abcdef123",
        "keys": "sk-batch-form-01\nsk-batch-form-02"})
    assert status == 303
    ids = {a.identifier for a in logged_in.proxy.core.pool.accounts()}
    assert {"frank@example.com", "+8613900000000"} <= ids and len(ids) == 5
    assert {"sk-batch-form-01", "sk-batch-form-02"} <= set(logged_in.proxy.core.config.key_secrets)
    _, page, _ = await logged_in.get("/admin/ui/accounts")
    assert "Imported 3 new accounts" in page


async def test_keys_page_shows_previews_only(logged_in: Browserless):
    await logged_in.post("/admin/ui/keys/add", {"key": "sk-visible-once-12345"})
    _, page, _ = await logged_in.get("/admin/ui/keys")
    assert "sk-visible-once-12345" not in page and "sk-v…45" in page
    key_id = re.search(r'data-key-id="([0-9a-f]+)">(?:(?!</tr>).)*?<td class="mono">sk-v',
                       page, re.S).group(1)
    await logged_in.post("/admin/ui/keys/delete", {"key_id": key_id})
    assert "sk-visible-once-12345" not in logged_in.proxy.core.config.key_secrets


async def test_created_key_secret_is_on_the_answer_page_only(logged_in: Browserless):
    status, page, _ = await logged_in.post("/admin/ui/keys/create", {
        "name": "form-made", "rpm": "7", "models": "deepseek-chat, claude-*"})
    [key] = [k for k in logged_in.proxy.core.config.keys if k.name == "form-made"]
    assert key.secret in page and key.limits.rpm == 7
    assert key.models == ("deepseek-chat", "claude-*")
    _, again, _ = await logged_in.get("/admin/ui/keys")
    assert key.secret not in again and "form-made" in again


@pytest.mark.parametrize("headers, origin", [
    ({}, None),
    ({"X-Forwarded-Proto": "https"}, "https://{host}"),
    ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "llm.example.org"},
     "https://llm.example.org")])
async def test_the_keys_page_tells_clients_the_origin_the_browser_used(
        logged_in: Browserless, headers: dict, origin: str | None):
    """Behind a TLS-terminating proxy the page's example told clients to send
    their key to http://…, in the clear, since the server itself is reached
    over plain HTTP."""
    host = logged_in.url("").split("://")[1]
    async with logged_in.http.get(logged_in.url("/admin/ui/keys"), headers=headers) as resp:
        page = await resp.text()
    expected = (origin or "http://{host}").format(host=host)
    assert f"curl {expected}/v1/chat/completions" in page


async def test_config_download_and_upload(logged_in: Browserless):
    async with logged_in.http.get(logged_in.url("/admin/ui/config/download")) as resp:
        assert resp.headers["Content-Disposition"] == 'attachment; filename="config.json"'
        exported = json.loads(await resp.text())
    assert [secret_of(k) for k in exported["keys"]] == ["test-key"] and "jwt_secret" not in exported.get("admin", {})
    _, page, _ = await logged_in.get("/admin/ui/config")
    assert "pw-alice" not in page
    upload = aiohttp.FormData()
    upload.add_field("csrf_token", logged_in.csrf)
    upload.add_field("mode", "merge")
    upload.add_field("file", json.dumps({"keys": ["sk-uploaded-777777"]}).encode(),
                     filename="config.json", content_type="application/json")
    async with logged_in.http.post(logged_in.url("/admin/ui/config/import"), data=upload,
                                   allow_redirects=False) as resp:
        assert resp.status == 303
    assert logged_in.proxy.core.config.key_secrets == ("test-key", "sk-uploaded-777777")
    status, page, _ = await logged_in.post("/admin/ui/config/import",
                                           {"config_text": "not json", "mode": "merge"})
    assert status == 400 and "neither JSON nor base64" in page


async def test_captures_page_lists_and_clears(logged_in: Browserless):
    captures = logged_in.proxy.core.captures
    captures.configure(enabled=True, limit=5, max_body_bytes=100)
    capture = captures.start("POST", "http://up/api/v0/chat/completion",
                             {"authorization": "Bearer tok-secret-0001"}, b"{}")
    capture.set_status(200)
    capture.finish()
    _, page, _ = await logged_in.get("/admin/ui/captures")
    assert "/api/v0/chat/completion" in page and "tok-secret-0001" not in page
    assert (await logged_in.post("/admin/ui/captures/clear", {}))[0] == 303
    assert captures.items() == []


# -- playground relay ------------------------------------------------------------------------------


FAMILY_TEXT = {
    "openai": lambda d: "".join((c.get("delta") or {}).get("content") or ""
                                for c in d.get("choices") or []),
    "anthropic": lambda d: (d.get("delta") or {}).get("text", "")
    if d.get("type") == "content_block_delta" else "",
    "gemini": lambda d: "".join(p.get("text", "") for c in d.get("candidates") or []
                                for p in (c.get("content") or {}).get("parts") or []
                                if not p.get("thought")),
}


@pytest.mark.parametrize("family", sorted(FAMILY_TEXT))
async def test_playground_relays_each_family_as_a_stream(logged_in: Browserless, family):
    body = {"family": family, "message": f"hello from {family}", "thinking": "off"}
    async with logged_in.http.post(logged_in.url("/admin/ui/playground/send"), json=body,
                                   headers={"X-CSRF-Token": logged_in.csrf}) as resp:
        raw = await resp.text()
        assert resp.status == 200, raw[:300]
        assert resp.headers["Content-Type"].startswith("text/event-stream")
    chunks = [json.loads(line[5:]) for line in raw.splitlines()
              if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]")]
    answer = "".join(FAMILY_TEXT[family](c) for c in chunks)
    assert f"hello from {family}" in answer
    assert logged_in.proxy.key not in raw


async def test_playground_refuses_without_csrf_or_message(logged_in: Browserless):
    async with logged_in.http.post(logged_in.url("/admin/ui/playground/send"),
                                   json={"family": "openai", "message": "x"}) as resp:
        assert resp.status == 403
    async with logged_in.http.post(logged_in.url("/admin/ui/playground/send"),
                                   json={"family": "openai", "message": " "},
                                   headers={"X-CSRF-Token": logged_in.csrf}) as resp:
        assert resp.status == 400 and (await resp.json())["field"] == "message"
    async with logged_in.http.post(logged_in.url("/admin/ui/playground/send"),
                                   json={"family": "cobol", "message": "x"},
                                   headers={"X-CSRF-Token": logged_in.csrf}) as resp:
        assert resp.status == 400 and (await resp.json())["field"] == "family"


async def test_accounts_page_shows_usage_per_account(logged_in: Browserless):
    proxy = logged_in.proxy
    async with logged_in.http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                                   json={"model": "deepseek-chat", "messages": [
                                       {"role": "user", "content": "count me"}]}) as resp:
        body = await resp.json()
    _, page, _ = await logged_in.get("/admin/ui/accounts")
    section = page[page.index('id="account-usage"'):]
    row = re.search(r'<tr data-account="([^"]+)">(.*?)</tr>', section, re.S)
    assert row is not None and row.group(1).endswith("@example.com")
    cells = re.findall(r'<td class="num">(\d+)</td>', row.group(2))
    assert cells == ["1", "0", str(body["usage"]["prompt_tokens"]),
                     str(body["usage"]["completion_tokens"])]


async def test_a_keys_limits_are_edited_on_its_page(logged_in: Browserless):
    await logged_in.post("/admin/ui/keys/create", {"name": "editable", "rpm": "5",
                                                   "models": "deepseek-chat"})
    [key] = [k for k in logged_in.proxy.core.config.keys if k.name == "editable"]
    key_id = hashlib.sha256(key.secret.encode()).hexdigest()[:12]
    status, page, _ = await logged_in.get(f"/admin/ui/keys/{key_id}")
    assert status == 200 and 'id="key-limits"' in page and key.secret not in page
    status, _, resp = await logged_in.post("/admin/ui/keys/edit", {
        "key_id": key_id, "note": "now metered", "tokens_per_day": "1000", "models": ""})
    assert status == 303 and resp.headers["Location"] == f"/admin/ui/keys/{key_id}"
    [edited] = [k for k in logged_in.proxy.core.config.keys if k.name == "editable"]
    assert edited.secret == key.secret and edited.note == "now metered"
    assert (edited.limits.rpm, edited.limits.tokens_per_day) == (0, 1000)
    assert edited.models == ()


async def test_an_expiry_set_on_the_key_page_can_be_taken_away(logged_in: Browserless):
    """The key page could set or move a key's expiry but never remove it:
    0 days meant "keep", so an expiry set by mistake stayed until the API was used."""
    await logged_in.post("/admin/ui/keys/create", {"name": "lapsing", "expires_days": "3"})
    [key] = [k for k in logged_in.proxy.core.config.keys if k.name == "lapsing"]
    key_id = hashlib.sha256(key.secret.encode()).hexdigest()[:12]
    assert key.expires > time.time()
    await logged_in.post("/admin/ui/keys/edit", {"key_id": key_id, "expires_days": ""})
    [kept] = [k for k in logged_in.proxy.core.config.keys if k.name == "lapsing"]
    assert kept.expires == key.expires
    status, _, _ = await logged_in.post("/admin/ui/keys/edit",
                                        {"key_id": key_id, "expires_days": "0"})
    [never] = [k for k in logged_in.proxy.core.config.keys if k.name == "lapsing"]
    assert status == 303 and never.expires == 0 and not never.expired(time.time() + 1e9)


class _FormFields(HTMLParser):
    """What a browser would submit from each form as the page shows it:
    [(the form's attributes, its fields)]."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[dict, dict[str, str]]] = []
        self._fields: dict[str, str] | None = None
        self._select = self._textarea = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self._fields = {}
            self.forms.append((a, self._fields))
        elif self._fields is None:
            return
        elif tag == "input" and (a.get("type") != "checkbox" or "checked" in a):
            self._fields[a["name"]] = a.get("value") or ("on" if a.get("type") == "checkbox"
                                                         else "")
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self._fields[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self._fields[self._textarea] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea and self._fields is not None:
            self._fields[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._fields = None
        elif tag in ("select", "textarea"):
            self._select = self._textarea = ""


def forms_of(page: str) -> list[tuple[dict, dict[str, str]]]:
    parser = _FormFields()
    parser.feed(page)
    return parser.forms


def settings_form(page: str) -> dict[str, str]:
    return next(fields for attrs, fields in forms_of(page) if attrs.get("id") == "settings-form")


async def test_a_stale_settings_form_keeps_what_another_admin_changed(
        logged_in: Browserless, proxy: Proxy):
    """Admin A loads the settings page, admin B changes two settings, then A
    saves the one it edited: B's changes stay, A's lands."""
    _, page, _ = await logged_in.get("/admin/ui/settings")
    form = settings_form(page)
    assert form["runtime.account_max_inflight"] == "2" and "settings_shown" in form
    async with aiohttp.ClientSession() as http:
        other = await admin_for(proxy, http)
        await other.ok("PUT", "/admin/settings", json={
            "runtime": {"global_max_inflight": 7},
            "model_aliases": {"team": "deepseek-reasoner"}})
    status, _, _ = await logged_in.post("/admin/ui/settings", {
        **form, "runtime.account_max_inflight": "4"})
    assert status == 303
    saved = proxy.store.snapshot()
    assert saved["runtime"]["account_max_inflight"] == 4
    assert saved["runtime"]["global_max_inflight"] == 7
    assert saved["model_aliases"] == {"team": "deepseek-reasoner"}
    # A failed save keeps the snapshot the page was first loaded with.
    status, page, _ = await logged_in.post("/admin/ui/settings", {
        **form, "runtime.account_max_inflight": "0"})
    assert status == 400 and settings_form(page)["settings_shown"] == form["settings_shown"]


async def test_a_stale_provider_form_keeps_what_another_admin_changed(
        logged_in: Browserless, proxy: Proxy):
    async with aiohttp.ClientSession() as http:
        other = await admin_for(proxy, http)
        await other.ok("POST", "/admin/providers", json={
            "name": "qwen", "base_url": "http://127.0.0.1:9/v1", "models": ["qwen-*"],
            "api_key": "sk-qwen-secret-0123456789", "headers": {"X-Org": "org-secret-42"}})
        _, page, _ = await logged_in.get("/admin/ui/providers")
        form = next(f for a, f in forms_of(page) if f.get("original") == "qwen")
        assert "sk-qwen-secret" not in page and "org-secret-42" not in page
        await other.ok("PUT", "/admin/providers/qwen", json={"timeout_seconds": 33,
                                                             "models": ["qwen-*", "qwq-*"]})
    status, _, _ = await logged_in.post("/admin/ui/providers/update", {
        **form, "max_inflight": "3"})
    assert status == 303
    saved = proxy.store.snapshot()["providers"][0]
    assert saved["max_inflight"] == 3 and saved["timeout_seconds"] == 33
    assert saved["models"] == ["qwen-*", "qwq-*"]
    assert saved["api_key"] == "sk-qwen-secret-0123456789"
    assert saved["headers"] == {"X-Org": "org-secret-42"}


async def test_settings_form_refuses_nan_and_infinity(logged_in: Browserless):
    """The form reads numbers with float(), which takes 'nan' and 'inf': NaN
    passed every range check (it compares false) and was applied, while the
    file got null in its place; inf passed every minimum."""
    _, page, _ = await logged_in.get("/admin/ui/settings")
    form = settings_form(page)
    config = logged_in.proxy.core.config
    status, page, _ = await logged_in.post("/admin/ui/settings", {
        **form, "runtime.queue_timeout_seconds": "nan", "health.jitter": "NaN",
        "history_file.min_prompt_chars": "1e999"})
    assert status == 400
    for path in ("runtime.queue_timeout_seconds", "health.jitter"):
        assert "must be a finite number" in field_block(page, path), path
    assert "has-error" in field_block(page, "history_file.min_prompt_chars")
    assert logged_in.proxy.core.config == config


async def test_a_stale_key_form_keeps_what_another_admin_changed(
        logged_in: Browserless, proxy: Proxy):
    """The key page's edit form re-sent its models and every limit, so saving
    a note from a page loaded before another admin's change undid it."""
    async with aiohttp.ClientSession() as http:
        other = await admin_for(proxy, http)
        created = await other.ok("POST", "/admin/keys", json={
            "name": "team", "limits": {"rpm": 5, "concurrent": 2}, "models": ["deepseek-chat"]})
        _, page, _ = await logged_in.get(f"/admin/ui/keys/{created['id']}")
        form = next(f for a, f in forms_of(page) if a.get("id") == "edit-key")
        assert form["rpm"] == "5" and form["models"] == "deepseek-chat"
        await other.ok("PATCH", f"/admin/keys/{created['id']}", json={
            "limits": {"rpm": 100, "concurrent": 2, "tokens_per_day": 5000},
            "models": ["deepseek-chat", "deepseek-reasoner"]})
    status, _, _ = await logged_in.post("/admin/ui/keys/edit", {
        **form, "note": "for the build bots", "concurrent": "3"})
    assert status == 303
    saved = next(k for k in proxy.store.snapshot()["keys"]
                 if isinstance(k, dict) and k.get("name") == "team")
    assert saved["note"] == "for the build bots"
    assert saved["limits"] == {"rpm": 100, "concurrent": 3, "tokens_per_day": 5000}
    assert saved["models"] == ["deepseek-chat", "deepseek-reasoner"]
    # Clearing a field on the page still clears it.
    _, page, _ = await logged_in.get(f"/admin/ui/keys/{created['id']}")
    form = next(f for a, f in forms_of(page) if a.get("id") == "edit-key")
    await logged_in.post("/admin/ui/keys/edit", {**form, "rpm": "", "models": ""})
    saved = next(k for k in proxy.store.snapshot()["keys"]
                 if isinstance(k, dict) and k.get("name") == "team")
    assert "models" not in saved and not saved["limits"].get("rpm")
    assert saved["limits"]["tokens_per_day"] == 5000


async def test_two_servers_on_one_host_keep_their_own_dashboard_sessions(
        proxy_factory: ProxyFactory):
    """Cookies do not tell ports apart: logging in to a second server on the
    same host (a test instance beside production) replaced the first one's
    session cookie, so each login logged the other dashboard out."""
    first, second = await proxy_factory(), await proxy_factory()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        one, two = Browserless(first, http), Browserless(second, http)
        await one.log_in()
        await two.log_in()
        assert (await one.get("/admin/ui/settings"))[0] == 200
        assert (await two.get("/admin/ui/settings"))[0] == 200
        status, _, _ = await one.post("/admin/ui/keys/add", {"key": "sk-first-server-001"})
        assert status == 303 and "sk-first-server-001" in first.core.config.key_secrets
