"""A large admin body (JSON, a dashboard form, a pasted config) is parsed and
walked in a worker thread, as the API families parse theirs: megabytes of
it, up to the admin body cap, held every other request on the event loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from admin_util import Admin, admin  # noqa: F401  (fixture)
from test_dashboard_forms import Browserless, browser, logged_in  # noqa: F401  (fixtures)

from ds2proxy import body as body_module
from ds2proxy.admin import context, forms
from ds2proxy.body import PARSE_OFF_LOOP_BYTES

KEYS = [f"sk-batch-off-loop-{i:06d}" for i in range(PARSE_OFF_LOOP_BYTES // 20)]


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any, str], dict[str, list[int]]]:
    """Record the thread each named function of a module runs on."""
    seen: dict[str, list[int]] = {}

    def watch(module: Any, name: str) -> dict[str, list[int]]:
        original = getattr(module, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            seen.setdefault(name, []).append(threading.get_ident())
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, recorded)
        return seen

    return watch


async def test_a_large_admin_json_body_is_parsed_and_walked_off_the_loop(admin: Admin, threads):
    threads(body_module, "parse_object")
    seen = threads(context, "check_depth")
    sent = orjson.dumps({"keys": KEYS})
    assert PARSE_OFF_LOOP_BYTES < len(sent) < body_module.OFF_LOOP_JSON_BYTES
    result = await admin.ok("POST", "/admin/import", json={"keys": KEYS})
    assert result["imported_keys"] == len(KEYS)
    loop = threading.get_ident()
    assert seen["parse_object"] and loop not in seen["parse_object"]
    assert seen["check_depth"] and loop not in seen["check_depth"]


async def test_a_small_admin_json_body_is_parsed_on_the_loop(admin: Admin, threads):
    seen = threads(context, "check_depth")
    result = await admin.ok("POST", "/admin/import", json={"keys": KEYS[:2]})
    assert result["imported_keys"] == 2 and seen["check_depth"] == [threading.get_ident()]


async def test_a_too_deep_large_admin_body_is_still_refused(admin: Admin):
    deep: Any = KEYS
    for _ in range(context.MAX_DEPTH + 1):
        deep = [deep]
    reply = await admin.call("POST", "/admin/import", json={"keys": deep})
    assert reply.status == 400 and "nested more than" in reply.json()["detail"]


async def test_a_large_dashboard_form_is_split_off_the_loop(logged_in: Browserless, threads):
    threads(body_module, "parse_form")
    seen = threads(forms, "_import_lines")
    status, _, _ = await logged_in.post("/admin/ui/accounts/import", {
        "keys": "\n".join(KEYS), "accounts": "off-loop-token-abcdef\nzoe@example.com:pw é&="})
    assert status == 303
    loop = threading.get_ident()
    assert seen["parse_form"] and loop not in seen["parse_form"]
    assert seen["_import_lines"] and loop not in seen["_import_lines"]
    assert set(KEYS) <= set(logged_in.proxy.core.config.key_secrets)
    account = next(a for a in logged_in.proxy.core.pool.accounts()
                   if a.identifier == "zoe@example.com")
    assert account.config.password == "pw é&="  # decoded as request.post() decodes it


async def test_a_small_dashboard_form_is_split_by_aiohttp(logged_in: Browserless, threads):
    seen = threads(body_module, "parse_form")
    status, _, _ = await logged_in.post("/admin/ui/accounts/import", {"keys": KEYS[0]})
    assert status == 303 and "parse_form" not in seen
    assert KEYS[0] in logged_in.proxy.core.config.key_secrets


async def test_a_large_pasted_config_is_decoded_off_the_loop(logged_in: Browserless, threads):
    seen = threads(forms, "_document")
    config = orjson.dumps({"keys": KEYS}).decode()
    status, _, _ = await logged_in.post("/admin/ui/config/import",
                                        {"config_text": config, "mode": "merge"})
    assert status == 303
    assert seen["_document"] and threading.get_ident() not in seen["_document"]
    assert set(KEYS) <= set(logged_in.proxy.core.config.key_secrets)


async def test_a_large_form_with_too_many_fields_is_refused(logged_in: Browserless):
    fields = "&".join(f"f{i}=" + "x" * 80 for i in range(body_module.MAX_FORM_FIELDS + 1))
    async with logged_in.http.post(
            logged_in.url("/admin/ui/accounts/import"), data=fields.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False) as resp:
        assert resp.status == 413, resp.status
        assert "more than 1000 fields" in await resp.text()


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=b"])
async def test_a_form_over_the_admin_cap_gets_the_refused_page(logged_in: Browserless,
                                                               content_type: str):
    pad = b"x" * (body_module.ADMIN_BODY_BYTES + 1)
    data = (b"pad=" + pad if content_type.startswith("application") else
            b'--b\r\nContent-Disposition: form-data; name="pad"\r\n\r\n' + pad + b"\r\n--b--\r\n")
    async with logged_in.http.post(logged_in.url("/admin/ui/accounts/import"), data=data,
                                   headers={"Content-Type": content_type},
                                   allow_redirects=False) as resp:
        page = await resp.text()
        assert resp.status == 413 and "Request refused" in page
        assert f"{body_module.ADMIN_BODY_BYTES}-byte limit" in page

