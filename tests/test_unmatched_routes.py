"""A path no route serves, or a method a route does not take, answers in
the error shape of the family the path belongs to (an SDK can show it),
keeping ``Allow`` on a 405; the dashboard's pages keep plain answers."""

from __future__ import annotations

import json

import aiohttp
import pytest


async def request(proxy, method: str, path: str) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, proxy.url + path, headers=proxy.headers()) as resp:
            return resp.status, dict(resp.headers), await resp.text()


@pytest.mark.parametrize("method, path, shape", [
    ("GET", "/v1/nothing", "openai"),
    ("POST", "/lm/v2/foo", "openai"),
    ("POST", "/api/v1/foo", "openai"),
    ("GET", "/anthropic/v1/foo", "anthropic"),
    ("GET", "/v1/messages/nothing/here", "anthropic"),
    ("GET", "/v1beta/foo", "google"),
    ("GET", "/admin/nothing", "admin"),
])
async def test_unknown_paths_are_404_in_the_family_shape(proxy, method, path, shape):
    status, headers, text = await request(proxy, method, path)
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    body = json.loads(text)
    if shape == "openai":
        assert body["error"]["code"] == "not_found" and path in body["error"]["message"]
    elif shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    elif shape == "google":
        assert (body["error"]["code"], body["error"]["status"]) == (404, "NOT_FOUND")
    else:
        assert path in body["detail"]


@pytest.mark.parametrize("path, shape", [("/v1/chat/completions", "openai"),
                                         ("/v1/messages", "anthropic"),
                                         ("/lm/v2/chat/completions", "openai")])
async def test_wrong_method_is_405_with_allow_in_the_family_shape(proxy, path, shape):
    status, headers, text = await request(proxy, "GET", path)
    assert status == 405 and "POST" in headers["Allow"]
    body = json.loads(text)
    message = body["error"]["message"]
    assert "GET is not allowed" in message and "POST" in message
    if shape == "anthropic":
        assert body["type"] == "error"


async def test_dashboard_pages_keep_plain_answers(proxy):
    status, headers, _ = await request(proxy, "GET", "/admin/ui/nothing-here")
    assert status == 404 and not headers["Content-Type"].startswith("application/json")


async def test_admin_errors_have_one_shape(proxy):
    """A route's validation error, an unknown admin path and a refused
    cross-site call answer alike: ``detail`` (plus ``field`` when one is at
    fault), never cached."""
    async with aiohttp.ClientSession() as http:
        bad = await http.post(proxy.url + "/admin/keys", json={"key": "has space"},
                              headers={"Authorization": f"Bearer {proxy.admin_key}"})
        missing = await http.get(proxy.url + "/admin/nothing-here",
                                 headers={"Authorization": f"Bearer {proxy.admin_key}"})
        foreign = await http.get(proxy.url + "/admin/overview",
                                 headers={"Authorization": f"Bearer {proxy.admin_key}",
                                          "Origin": "https://elsewhere.example",
                                          "Sec-Fetch-Site": "cross-site"})
        replies = [(r.status, await r.json(), r.headers) for r in (bad, missing, foreign)]
    assert [status for status, _, _ in replies] == [400, 404, 403]
    for status, body, headers in replies:
        assert set(body) <= {"detail", "field", "errors"} and body["detail"], (status, body)
        assert headers["Cache-Control"] == "no-store", status
    assert replies[0][1]["field"] == "key"


async def test_a_gemini_method_path_answers_in_googles_shape_to_any_client(proxy):
    """``/v1/models/<name>:<action>`` is Google's path shape even without a
    Google key header: a wrong method there is a 405 Google's SDK can read."""
    status, headers, text = await request(proxy, "PUT", "/v1/models/gemini-2.5-pro:generateContent")
    assert status == 405 and "POST" in headers["Allow"]
    error = json.loads(text)["error"]
    assert error["code"] == 405 and "status" in error  # Google's shape, not OpenAI's
