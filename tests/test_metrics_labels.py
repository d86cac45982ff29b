"""/metrics stays bounded and well-formed under what clients control: the
exposition parses with prometheus_client's own parser, and no label value
grows with the files, models or paths a client sends."""

from __future__ import annotations

import base64

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from conftest import Proxy
from test_attachments import ask_openai, image_url_part

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


async def scrape(proxy: Proxy) -> list:
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/metrics", headers={
                "Authorization": f"Bearer {proxy.admin_key}"}) as resp:
            assert resp.status == 200
            text = await resp.text()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


async def test_polling_uploaded_files_adds_no_series_per_file(proxy: Proxy):
    for n in range(3):
        image = base64.b64encode(PNG + bytes([n])).decode()
        await ask_openai(proxy, image_url_part(f"data:image/png;base64,{image}"))
    assert len(proxy.fake.files) == 3
    polls = [s for s in await scrape(proxy) if s.name == "ds2proxy_upstream_calls_total"
             and "fetch_files" in s.labels["endpoint"]]
    assert [(s.labels["endpoint"], s.value) for s in polls] == [("/api/v0/file/fetch_files", 3)]


async def test_random_model_names_and_paths_share_bounded_series(proxy: Proxy):
    before = len(await scrape(proxy))
    async with aiohttp.ClientSession() as http:
        for n in range(12):
            name = f"made-up-{n}-\"{{x}}\n"
            await http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                            json={"model": name, "messages": [{"role": "user", "content": "x"}]})
            await http.post(proxy.url + f"/v1beta/models/made-up-{n}:generateContent",
                            headers={"x-goog-api-key": proxy.key}, json={"contents": []})
            await http.get(proxy.url + f"/v1/nowhere-{n}", headers=proxy.headers())
        first = await scrape(proxy)
        for n in range(12, 24):
            await http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                            json={"model": f"made-up-{n}", "messages": [
                                {"role": "user", "content": "x"}]})
    second = await scrape(proxy)
    assert len(first) > before and len(second) == len(first)
    assert not any("made-up" in v or "nowhere" in v for s in second for v in s.labels.values())
