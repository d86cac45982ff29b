"""Dev captures record real upstream exchanges made by a chat turn, redacted."""

from __future__ import annotations

import json

import aiohttp

from ds2proxy.testing import Scripted


async def test_a_chat_turn_is_captured_without_secrets(proxy_factory):
    proxy = await proxy_factory({"dev_captures": {"enabled": True, "limit": 50,
                                                  "max_body_bytes": 4096}})
    proxy.fake.enqueue(Scripted(answer="captured answer"))
    admin = {"Authorization": f"Bearer {proxy.admin_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                             json={"model": "deepseek-chat",
                                   "messages": [{"role": "user", "content": "hi"}]}) as resp:
            assert resp.status == 200
        async with http.get(proxy.url + "/admin/dev/captures", headers=admin) as resp:
            raw = await resp.read()
    listing = json.loads(raw)
    urls = [item["url"] for item in listing["items"]]
    assert any(u.endswith("/api/v0/chat/completion") for u in urls)
    assert any(u.endswith("/api/v0/users/login") for u in urls)
    completion = next(i for i in listing["items"] if i["url"].endswith("/chat/completion"))
    assert completion["status"] == 200
    text = raw.decode()
    tokens = [a.token for a in proxy.core.pool.accounts() if a.token]
    assert tokens
    for secret in [*tokens, "pw-alice", "pw-bob", proxy.key]:
        assert secret not in text
    pow_headers = [c.headers.get("x-ds-pow-response")
                   for c in proxy.fake.calls_to("chat/completion")]
    assert pow_headers and all(h and h not in text for h in pow_headers)
