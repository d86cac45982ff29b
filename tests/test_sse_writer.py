"""The shared stream writer: keep-alives while the upstream is silent, and a
client that leaves during the silence releases its account lease; runs of
frames (a PayloadRun among them) framed as each frame alone."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref

import aiohttp
import orjson
from aiohttp.test_utils import make_mocked_request

from ds2proxy import heap, sse
from ds2proxy.frames import PayloadRun
from ds2proxy.sse import JSONArrayWriter, SSEWriter
from ds2proxy.testing import Delivery, Scripted

USER = [{"role": "user", "content": "hi"}]


async def test_keepalive_comments_while_upstream_is_silent(proxy_factory):
    proxy = await proxy_factory({"runtime": {"keepalive_seconds": 0.05}})
    proxy.fake.enqueue(Scripted(answer="late answer", delivery=Delivery(silence=0.5,
                                                                         comment_every=1.0)))
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                             json={"model": "deepseek-chat", "messages": USER,
                                   "stream": True}) as resp:
            body = (await resp.read()).decode()
    lines = body.splitlines()
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    keepalives = [line for line in lines[:first_data] if line == ": keep-alive"]
    assert len(keepalives) >= 3
    assert lines[-2] == "data: [DONE]" or lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines
              if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "late answer"


async def test_gemini_keepalives_are_blank_lines(proxy_factory):
    proxy = await proxy_factory({"runtime": {"keepalive_seconds": 0.05}})
    proxy.fake.enqueue(Scripted(answer="ok", delivery=Delivery(silence=0.4, comment_every=1.0)))
    async with aiohttp.ClientSession() as http:
        async with http.post(
                proxy.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                headers={"x-goog-api-key": proxy.key},
                json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}) as resp:
            body = (await resp.read()).decode()
    assert ":" not in body.split("data: ", 1)[0]
    assert body.startswith("\n")


async def test_client_leaving_during_silence_releases_the_lease(proxy_factory):
    proxy = await proxy_factory({"runtime": {"keepalive_seconds": 0.05}})
    proxy.fake.enqueue(Scripted(answer="never read", delivery=Delivery(silence=30,
                                                                        comment_every=1.0)))
    async with aiohttp.ClientSession() as http:
        resp = await http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                               json={"model": "deepseek-chat", "messages": USER,
                                     "stream": True})
        assert await resp.content.readline() == b": keep-alive\n"
        assert proxy.core.pool.inflight == 1
        resp.close()
    for _ in range(300):
        if proxy.core.pool.inflight == 0:
            break
        await asyncio.sleep(0.01)
    assert proxy.core.pool.inflight == 0


async def test_frames_written_together_go_out_together_and_a_lone_frame_at_once(
        aiohttp_server):
    """Frames queued while the handler runs go out in a few socket writes; a
    single frame is sent as soon as the handler waits, not held for more."""
    from aiohttp import web

    from ds2proxy.sse import MAX_QUEUED_FRAMES, SSEWriter

    got_burst, writes = asyncio.Event(), []

    async def handler(request: web.Request) -> web.StreamResponse:
        writer = SSEWriter(request, keepalive=60)
        original = writer.response.write

        async def counted(data: bytes) -> None:
            writes.append(data.count(b"data: "))
            await original(data)

        writer.response.write = counted
        for n in range(100):
            await writer.send({"n": n})
        await got_burst.wait()
        await writer.send({"n": "lone"})
        await got_lone.wait()
        await writer.send("[DONE]")
        return await writer.done()

    got_lone = asyncio.Event()
    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/")) as resp:
            seen = []
            async for line in resp.content:
                if line.startswith(b"data: {"):
                    seen.append(json.loads(line[6:])["n"])
                if len(seen) == 100 and not got_burst.is_set():
                    got_burst.set()
                if seen[-1:] == ["lone"]:
                    got_lone.set()
    assert seen == [*range(100), "lone"]
    assert sum(writes[:-2]) == 100 and len(writes) - 2 <= 100 // MAX_QUEUED_FRAMES + 1
    assert writes[-2:] == [1, 1]  # the lone frame, then [DONE]


class _Captured(SSEWriter):
    """The payloads queued, instead of a socket."""

    def __init__(self) -> None:
        super().__init__(make_mocked_request("GET", "/"))
        self.payloads: list[bytes] = []

    async def _write(self, payload: bytes) -> None:
        self.payloads.append(payload)


FRAME_SETS = [
    [b'{"a":1}', b'{"b":"x"}', b'{"c":[]}'],
    [b'{"a":1}', {"b": 2}, b'{"c":3}'],
    [b'{"a":1}', ("named", {"b": 2})],
    [b'{"a":1}', "[DONE]"],
    [b'{"a":1}', b'two\nlines'],
    [bytearray(b'{"a":1}'), b'{"b":2}'],
    [b'{"only":1}'],
    [{"role": 1}, b'{"a":1}', b'{"b":2}', b'{"c":3}', {"end": 1}, "[DONE]"],
    [{"role": 1}, b'{"a":1}', b'x\ny', b'{"c":3}', ("named", {"d": 4}), b'{"e":5}'],
    [],
]


async def test_a_run_of_frames_is_framed_as_each_frame_alone():
    for frames in FRAME_SETS:
        writer = _Captured()
        await writer.send_all(frames)
        assert b"".join(writer.payloads) == b"".join(writer.encode(f) for f in frames)
        assert len(writer.payloads) == (1 if frames else 0)


RUN = PayloadRun(b'{"d":{"content":', b'}}', ["a", '"q"', ",", "\\", "ü"])


async def test_a_payload_run_is_framed_as_its_payloads():
    """SSE frames a run at once exactly as its payloads one by one; the JSON
    array writer (which never gets one from the core) writes its payloads."""
    writer = _Captured()
    await writer.send_all([{"role": 1}, RUN, b'{"e":5}'])
    assert b"".join(writer.payloads) == b"".join(
        writer.encode(f) for f in [{"role": 1}, *RUN.payloads(), b'{"e":5}'])
    array, one_by_one = (JSONArrayWriter(make_mocked_request("GET", "/")) for _ in range(2))
    body = array.encode(RUN) + array.closing()
    assert body == b"".join(one_by_one.encode(p) for p in RUN.payloads()) + one_by_one.closing()
    assert orjson.loads(body) == [{"d": {"content": text}} for text in RUN.texts]


def test_a_finished_request_is_freed_without_the_cycle_collector():
    """The request holds its writer; the writer holds the request weakly, so
    a finished stream's request (its connection's objects with it) goes at
    once, not at the next full collection."""
    gc.disable()
    try:
        request = make_mocked_request("GET", "/")
        writer = SSEWriter(request)
        assert writer.request is request
        alive = weakref.ref(request)
        del request, writer
        assert alive() is None
    finally:
        gc.enable()


def test_the_arena_cap_applies_on_this_platform():
    assert heap.limit_arenas(heap.ARENAS)


async def _sent_before_the_loop_runs(monkeypatch, hold: float) -> tuple[int, int]:
    """Frames queued back to back without yielding: how many socket writes
    happened before the flush task could run, and how many after."""
    monkeypatch.setattr(sse, "MAX_HOLD_SECONDS", hold)
    request = make_mocked_request("GET", "/")
    writer = SSEWriter(request)
    for n in range(5):
        await writer.send({"n": n})
    written = request.writer.write.call_count
    await writer.flush()
    return written, request.writer.write.call_count


async def test_a_backlog_is_written_out_as_it_is_worked_through(monkeypatch):
    """The flush task runs only when the handler waits; while it works
    through lines that had already arrived, frames held past the hold time
    are written inline (here the hold time is nil: every later frame)."""
    held, total = await _sent_before_the_loop_runs(monkeypatch, 3600.0)
    inline, _ = await _sent_before_the_loop_runs(monkeypatch, 0.0)
    assert held == 0 and total >= 1
    assert inline >= 4
