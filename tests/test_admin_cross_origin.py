"""The admin surface is closed to other origins: no CORS header on any admin
answer, cross-site browser requests refused (preflights, login, reads,
writes, dashboard forms), while API routes keep their open CORS, the
same-origin dashboard and header-less clients (curl, scripts) keep working,
and the default admin key neither leaves loopback nor is named to a browser
elsewhere."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest
from admin_util import LONG_KEY, login, secret_config
from conftest import REPO, Proxy, ProxyFactory

from ds2proxy.cli import UnsafeListen, _check_exposure, parse_args
from ds2proxy.config_store import ConfigStore

EVIL = "http://evil.example"
ACAO = "Access-Control-Allow-Origin"


async def _request(proxy: Proxy, method: str, path: str, *, headers: dict[str, str],
                   json_body: object = None) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, proxy.url + path, headers=headers, json=json_body,
                                allow_redirects=False) as resp:
            return resp.status, await resp.read(), dict(resp.headers)


@pytest.fixture
async def default_key_proxy(proxy_factory: ProxyFactory) -> Proxy:
    return await proxy_factory(secret_config(), admin_key="admin")


async def test_evil_page_cannot_log_in_with_the_default_key_or_export(default_key_proxy: Proxy):
    proxy = default_key_proxy
    status, body, headers = await _request(proxy, "OPTIONS", "/admin/login", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 403 and ACAO not in headers
    assert "cross-site" in json.loads(body)["detail"]
    status, body, headers = await _request(proxy, "POST", "/admin/login", headers={
        "Origin": EVIL}, json_body={"admin_key": "admin"})
    assert status == 403 and ACAO not in headers and b"token" not in body
    status, body, _ = await _request(proxy, "POST", "/admin/login", headers={
        "Sec-Fetch-Site": "cross-site"}, json_body={"admin_key": "admin"})
    assert status == 403 and b"token" not in body
    # curl (no Origin) still logs in; the stolen token is useless from a page.
    async with aiohttp.ClientSession() as http:
        token = (await login(http, proxy.url, "admin")).json()["token"]
    for hostile in ({"Origin": EVIL}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "null"}, {"Origin": proxy.url, "Sec-Fetch-Site": "cross-site"}):
        status, body, headers = await _request(proxy, "GET", "/admin/config/export", headers={
            "Authorization": f"Bearer {token}", **hostile})
        assert status == 403, hostile
        assert ACAO not in headers and LONG_KEY.encode() not in body
    for own in ({}, {"Origin": proxy.url}, {"Sec-Fetch-Site": "same-origin"},
                {"Origin": proxy.url, "Sec-Fetch-Site": "same-origin"}):
        status, body, headers = await _request(proxy, "GET", "/admin/config/export", headers={
            "Authorization": f"Bearer {token}", **own})
        assert status == 200, own
        assert ACAO not in headers


def _sample_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def test_every_admin_route_refuses_cross_site_and_has_no_cors(proxy: Proxy):
    routes = [(r.method, r.resource.canonical) for r in proxy.app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/admin")
              and r.method != "HEAD"]
    assert len(routes) > 40
    async with aiohttp.ClientSession() as http:
        token = (await login(http, proxy.url, proxy.admin_key)).json()["token"]
    for method, path in routes:
        url_path = ("/admin/static/admin.css" if path.startswith("/admin/static")
                    else _sample_path(path))
        status, _, headers = await _request(proxy, method, url_path, headers={
            "Authorization": f"Bearer {token}", "Origin": EVIL, "Sec-Fetch-Mode": "cors",
            "Sec-Fetch-Site": "cross-site"})
        assert status == 403, (method, url_path, status)
        assert not any(h.lower().startswith("access-control-") for h in headers), url_path
    # Unmatched admin paths and plain same-origin answers carry no CORS either.
    for path in ("/admin/no-such-route", "/admin/verify", "/admin/ui/login"):
        _, _, headers = await _request(proxy, "GET", path, headers={})
        assert not any(h.lower().startswith("access-control-") for h in headers), path


@pytest.mark.parametrize("origin, host, allowed", [
    ("null", None, False),  # a sandboxed frame, a data: URL, a file
    ("HTTP://127.0.0.1:{port}", None, True),  # the same origin, spelt in capitals
    ("http://127.0.0.1.:{port}", None, False),  # a trailing dot is another origin
    ("http://localhost.:{port}", "localhost:{port}", False),
    ("http://127.0.0.1", None, False),  # another port
    ("https://127.0.0.1:{port}", None, True),  # a TLS proxy's https in front
    ("http://127.0.0.1:{port}@evil.example", None, False),
    ("http://127.0.0.1:{port}.evil.example", None, False),
    ("http://[::1]:{port}", None, False),
    ("http://[::1]:{port}", "[::1]:{port}", True),
    ("http://[0:0:0:0:0:0:0:1]:{port}", "[::1]:{port}", False),
])
async def test_odd_origins_are_this_server_only_when_they_name_it(
        proxy: Proxy, origin: str, host: str | None, allowed: bool):
    """An older browser sends only Origin: it must name this server's host
    and port exactly (case aside) to read the admin API."""
    port = proxy.server.port
    headers = {"Authorization": f"Bearer {proxy.admin_key}", "Origin": origin.format(port=port)}
    if host is not None:
        headers["Host"] = host.format(port=port)
    status, body, response_headers = await _request(proxy, "GET", "/admin/config",
                                                    headers=headers)
    assert status == (200 if allowed else 403), body[:200]
    assert ACAO not in response_headers


async def test_head_on_a_json_admin_read_is_answered_and_guarded_like_its_get(proxy: Proxy):
    """HEAD on /admin/config (a monitor checking the admin is up) was a 405,
    though every other GET route of the server answers HEAD."""
    async with aiohttp.ClientSession() as http:
        token = (await login(http, proxy.url, proxy.admin_key)).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    for path in ("/admin/config", "/admin/overview", "/admin/usage", "/admin/keys"):
        status, body, _ = await _request(proxy, "HEAD", path, headers=bearer)
        assert (status, body) == (200, b""), path
        status, _, _ = await _request(proxy, "HEAD", path, headers={})
        assert status == 401, path
        status, _, headers = await _request(proxy, "HEAD", path, headers={
            **bearer, "Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
        assert status == 403 and ACAO not in headers, path


async def test_api_routes_keep_their_cors(proxy: Proxy):
    status, _, headers = await _request(proxy, "OPTIONS", "/v1/chat/completions", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert status == 204 and headers[ACAO] == "*"
    status, _, headers = await _request(proxy, "GET", "/v1/models", headers={
        "Origin": EVIL, **proxy.headers()})
    assert status == 200 and headers[ACAO] == "*"


async def test_dashboard_links_open_from_anywhere_but_its_forms_do_not(proxy: Proxy):
    status, _, headers = await _request(proxy, "GET", "/admin/", headers={
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Origin": EVIL})
    assert status == 303 and headers["Location"].startswith("/admin/ui/login")
    status, _, _ = await _request(proxy, "GET", "/admin/ui/config/download", headers={
        "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"})
    assert status == 403
    status, body, _ = await _request(proxy, "POST", "/admin/ui/login", headers={
        "Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert status == 403 and "cross-site" in json.loads(body)["detail"]


async def test_login_page_names_the_default_key_only_to_a_local_browser(
        default_key_proxy: Proxy):
    status, body, _ = await _request(default_key_proxy, "GET", "/admin/ui/login", headers={})
    assert status == 200 and b'id="default-key-banner"' in body
    for forwarded in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
                      {"X-Real-IP": "203.0.113.9"}):
        status, body, _ = await _request(default_key_proxy, "GET", "/admin/ui/login",
                                         headers=forwarded)
        assert status == 200
        assert b"default-key-banner" not in body and "“admin”".encode() not in body


@pytest.mark.parametrize("host, allowed", [
    ("rebound.example", False), ("127.0.0.1.nip.io", False), ("localhost", True),
    ("127.0.0.1", True), ("[::1]", True), ("192.0.2.7", True)])
async def test_default_key_refused_when_the_server_is_named_by_another_site(
        default_key_proxy: Proxy, host: str, allowed: bool):
    """DNS rebinding: a page whose own name now resolves to this machine is
    same-origin to itself, but its requests carry that name in Host."""
    port = default_key_proxy.url.rsplit(":", 1)[1]
    headers = {"Host": f"{host}:{port}", "Origin": f"http://{host}:{port}",
               "Sec-Fetch-Site": "same-origin"}
    status, body, _ = await _request(default_key_proxy, "POST", "/admin/login",
                                     headers=headers, json_body={"admin_key": "admin"})
    assert status == (200 if allowed else 403), body
    if not allowed:
        assert b"token" not in body and b"DS2PROXY_ADMIN_KEY" in body
        status, _, _ = await _request(default_key_proxy, "GET", "/admin/config/export",
                                      headers={**headers, "Authorization": "Bearer admin"})
        assert status == 403


async def test_a_chosen_key_works_under_any_host_name(proxy: Proxy):
    port = proxy.url.rsplit(":", 1)[1]
    status, _, _ = await _request(proxy, "POST", "/admin/login",
                                  headers={"Host": f"admin.example.org:{port}"},
                                  json_body={"admin_key": proxy.admin_key})
    assert status == 200


# -- the command line: the default key stays on loopback -----------------------------------


async def _run_cli(tmp_path: Path, *args: str, admin_key: str | None = None
                   ) -> asyncio.subprocess.Process:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"keys": ["k"], "accounts": []}))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DS2PROXY_", "DS2API_"))}
    if admin_key is not None:
        env["DS2PROXY_ADMIN_KEY"] = admin_key
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ds2proxy", "--config", str(config), "--port", "0", *args,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _serves(proc: asyncio.subprocess.Process) -> str:
    """Wait for the dashboard line, then stop the server; the log up to there."""
    seen = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "server exited: " + "".join(seen)
            seen.append(line)
            if "dashboard: http://" in line:
                return "".join(seen)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def test_default_key_refuses_a_network_address(tmp_path: Path):
    proc = await _run_cli(tmp_path, "--host", "0.0.0.0")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    message = err.decode()
    assert "default 'admin'" in message and "DS2PROXY_ADMIN_KEY=" in message
    assert "--allow-default-admin-key-on-network" in message
    assert "Traceback" not in message


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.7", "proxy.example",
                                  "::ffff:127.0.0.1"])
@pytest.mark.parametrize("admin_key", [None, "", "   ", "admin"])
def test_every_non_loopback_host_is_refused_with_the_default_key(host: str, admin_key):
    """Wildcards, names and mapped addresses alike; a blank key is no key."""
    args = parse_args(["--host", host])
    store = ConfigStore({"keys": ["k"]})
    with pytest.raises(UnsafeListen):
        _check_exposure(args, store, admin_key)
    _check_exposure(parse_args(["--host", host, "--allow-default-admin-key-on-network"]),
                    store, admin_key)
    _check_exposure(parse_args(["--host", "::1"]), store, admin_key)


async def test_a_blank_admin_key_is_the_default_one(proxy_factory: ProxyFactory):
    proxy = await proxy_factory(admin_key="   ")
    async with aiohttp.ClientSession() as http:
        assert (await login(http, proxy.url, "   ")).status == 401
        assert (await login(http, proxy.url, "admin")).status == 200


@pytest.mark.parametrize("args, admin_key", [
    (("--host", "0.0.0.0", "--allow-default-admin-key-on-network"), None),
    (("--host", "0.0.0.0"), "a-long-operator-chosen-admin-key"),
    (("--host", "127.0.0.1"), None),
])
async def test_network_listen_allowed_with_a_key_or_the_flag(tmp_path: Path, args, admin_key):
    log = await _serves(await _run_cli(tmp_path, *args, admin_key=admin_key))
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/admin/", log)


def test_readme_documents_the_flag():
    assert "--allow-default-admin-key-on-network" in (REPO / "README.md").read_text()
