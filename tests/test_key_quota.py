"""A key's daily token quota under concurrency, through the official SDK:
a turn reserves its prompt's estimate at admission and settles at its real
count, so turns side by side cannot all spend the same last tokens."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import openai
import pytest
from google.genai import errors as genai_errors
from clock_util import Clock
from conftest import ProxyFactory
from test_state_instances import within

from ds2proxy.canonical import Usage
from ds2proxy.keyring import identity_of
from ds2proxy.limits import DAY, KeyLimiter
from ds2proxy.request_record import PendingUsage, RequestRecord
from ds2proxy.testing import Delivery, Scripted
from ds2proxy.testing.clients import gemini_client, openai_client

SECRET = "sk-quota-key"
LONG = "tell me about the sea " * 10  # 220 characters: more than 30 tokens


@pytest.fixture
async def proxy(proxy_factory: ProxyFactory):
    return await proxy_factory({"keys": [{"name": "q", "key": SECRET,
                                          "limits": {"tokens_per_day": 30}}]})


async def slow_stream(proxy, client: openai.AsyncOpenAI):
    proxy.fake.enqueue(Scripted(answer="a slow answer", chunk_size=1,
                                delivery=Delivery(chunk_delay=0.02)))
    stream = await client.chat.completions.create(
        model="deepseek-chat", stream=True, messages=[{"role": "user", "content": LONG}])
    assert await stream.__anext__() is not None  # admitted, its turn running
    return stream


async def test_a_turn_in_progress_holds_the_last_tokens_of_the_day(proxy):
    """Checked before and charged after: a second request while the first ran
    saw 0 tokens used and was served too, each overshooting the quota by its
    whole count."""
    client = openai_client(proxy, key=SECRET)
    stream = await slow_stream(proxy, client)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "hi"}])
    ref = identity_of(SECRET)
    assert proxy.core.limiter.reserved(ref) == 30  # its estimate, capped at the quota
    assert caught.value.body["code"] == "key_token_quota"
    assert caught.value.response.headers["Retry-After"] == "1"
    assert "reserved by its requests in progress" in caught.value.message
    async for _ in stream:
        pass
    await proxy.core.usage.counted()
    assert proxy.core.limiter.reserved(ref) == 0
    assert proxy.core.limiter.tokens_today(ref) > 30
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "hi"}])
    assert int(caught.value.response.headers["Retry-After"]) > 1  # now the day is used up


async def test_a_reservation_is_given_back_on_every_way_out(proxy):
    client = openai_client(proxy, key=SECRET)
    stream = await slow_stream(proxy, client)
    await stream.close()  # the client goes away mid-stream
    proxy.fake.enqueue(Scripted(answer="", delivery=Delivery(drop_after=0)))
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "hi"}])
    ref = identity_of(SECRET)

    async def settled() -> bool:
        await proxy.core.usage.counted()
        return proxy.core.limiter.reserved(ref) == 0 and proxy.core.pool.inflight == 0

    await within(5, settled)  # the closed stream's handler ends on its own


async def test_a_used_up_day_says_when_it_resets_on_every_family(proxy):
    """Kept as it was, on purpose: a 429 carries Retry-After (the spec's
    agent-client rule 7) and the truthful wait for a daily quota is the
    reset at 00:00 UTC. The SDKs honour a Retry-After only up to 60 s and
    back off on their own beyond; Gemini CLI takes a retryDelay over 300 s
    for a terminal quota and stops at once instead of retrying."""
    midnight = (int(time.time() // DAY) + 1) * DAY
    proxy.core.limiter.clock = Clock(midnight - 3600)
    client = openai_client(proxy, key=SECRET)
    await client.chat.completions.create(model="deepseek-chat",
                                         messages=[{"role": "user", "content": LONG}])
    await proxy.core.usage.counted()
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.headers["Retry-After"] == "3600"
    with pytest.raises(genai_errors.ClientError) as refused:
        await gemini_client(proxy, key=SECRET).aio.models.generate_content(
            model="gemini-2.5-flash", contents="hi")
    assert refused.value.code == 429
    [retry] = [d for d in refused.value.details["error"]["details"]
               if d["@type"].endswith("RetryInfo")]
    assert retry["retryDelay"] == "3600s"
    proxy.core.limiter.clock = Clock(midnight - 0.5)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.headers["Retry-After"] == "1"
    proxy.core.limiter.clock = Clock(midnight)
    assert (await client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])).choices


async def test_a_request_still_counting_at_shutdown_is_charged_and_recorded(proxy, tmp_path):
    """The state file was closed before the requests still counting their
    usage were recorded: their charge to the key failed on the closed store
    and the request row was lost with it."""
    counting = threading.Event()

    def slow_count() -> Usage:
        counting.set()
        time.sleep(0.3)
        return Usage(prompt_tokens=7, completion_tokens=5)

    record = RequestRecord(request_id="req-at-shutdown", family="openai",
                           route="/v1/chat/completions", key_name="q",
                           key_ref=identity_of(SECRET), status=200)
    record.pending_usage = PendingUsage(slow_count, chars=10_000)  # counted in a thread
    proxy.core.usage.finish(record)
    await asyncio.to_thread(counting.wait, 5)
    await proxy.server.close()
    with sqlite3.connect(tmp_path / "config-0.state.sqlite") as db:
        [kept] = db.execute("SELECT value FROM records WHERE namespace = 'key_tokens'"
                            ).fetchall()
        assert json.loads(kept[0])["tokens"] == 12
        assert db.execute("SELECT prompt_tokens FROM requests WHERE request_id = "
                          "'req-at-shutdown'").fetchall() == [(7,)]


def test_a_clock_stepped_back_over_midnight_keeps_the_new_days_tokens():
    """A day's count was tied to the clock's day: stepped back over midnight
    (an NTP correction), the key read 0 tokens (a fresh quota for the rest
    of the old day), and its next charge overwrote the new day's count, lost
    when the clock came forward again."""
    midnight = (int(time.time() // DAY) + 1) * DAY
    limiter = KeyLimiter(clock=Clock(midnight + 30))
    limiter.add_tokens("ref", 100)
    limiter.clock = Clock(midnight - 30)
    assert limiter.tokens_today("ref") == 100
    limiter.add_tokens("ref", 5)
    limiter.clock = Clock(midnight + 60)
    assert limiter.tokens_today("ref") == 105
    limiter.clock = Clock(midnight + DAY)
    assert limiter.tokens_today("ref") == 0  # the next day still starts afresh
