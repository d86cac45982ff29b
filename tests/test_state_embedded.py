"""The embedded backend keeps everything in ONE SQLite file beside the
config, and a former separate usage file is imported into it once."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import aiohttp
import openai
import orjson
import pytest
from clock_util import Clock
from conftest import ProxyFactory, base_config
from admin_util import admin_for
from test_state_instances import AdminClient, ask, within

from ds2proxy.testing import FakeDeepSeek
from ds2proxy.testing.instances import Instances
from test_state_contract import row

from ds2proxy.state import kept_responses
from ds2proxy.state import sqlite as sqlite_state
from ds2proxy.state import usage as usage_module
from ds2proxy.state.errors import StateUnavailable
from ds2proxy.state.kept_responses import SQLiteResponses
from ds2proxy.state.sqlite import SQLiteStore
from ds2proxy.state.usage import SQLiteUsage

USER = [{"role": "user", "content": "hello"}]


async def test_one_state_file_and_the_old_usage_file_is_imported(
        proxy_factory: ProxyFactory, tmp_path) -> None:
    legacy = tmp_path / "config-0.usage.db"  # the first config proxy_factory writes
    old = SQLiteUsage(str(legacy))
    old.record(row(time.time() - 60, request_id="before-the-upgrade", completion_tokens=9))
    await old.close()

    proxy = await proxy_factory({"keys": [{"name": "team", "key": "sk-team"}]})
    client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="sk-team", max_retries=0)
    await client.chat.completions.create(model="deepseek-chat", messages=USER)
    usage = proxy.core.usage.store
    await usage.flush()
    rows, total = await usage.requests({}, 10, 0)
    assert total == 2
    assert [r["request_id"] for r in rows][-1] == "before-the-upgrade"
    assert rows[0]["key_name"] == "team"
    days = {r["name"]: r["requests"] for r in await usage.totals("model", "day", 0)}
    assert days == {"m": 1, "deepseek-chat": 1}

    proxy.core.pool.health.disable(proxy.core.pool.accounts()[0].identifier)
    await proxy.server.close()
    assert not legacy.exists() and (tmp_path / "config-0.usage.db.migrated").is_file()
    state = tmp_path / "config-0.state.sqlite"
    with sqlite3.connect(state) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert {"records", "requests", "rollups"} <= tables
        assert db.execute("SELECT COUNT(*) FROM records WHERE namespace = 'account_health'"
                          ).fetchone()[0] >= 1
    assert state.stat().st_mode & 0o777 == 0o600


async def test_stored_responses_outlive_a_restart_of_the_server_process(
        fake_upstream: FakeDeepSeek, instances) -> None:
    """Stored responses lived in the process's memory: a restart lost every
    one, so GET, DELETE and previous_response_id of a response stored a
    minute before answered 404 / 400 previous_response_not_found."""
    config = base_config(fake_upstream)
    config["keys"] = [{"name": "a", "key": "sk-owner-a"}, {"name": "b", "key": "sk-other-b"}]
    group: Instances = await instances(config, 1)

    def client(key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=group.running[0].url + "/v1", api_key=key,
                                  max_retries=0)

    first = await client("sk-owner-a").responses.create(
        model="deepseek-chat", input="remember the word teal", store=True)
    gone = await client("sk-owner-a").responses.create(
        model="deepseek-chat", input="a response to delete after the restart", store=True)
    await group.restart(0)

    owner = client("sk-owner-a")
    again = await owner.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == first.output_text
    items = await owner.responses.input_items.list(first.id)
    assert [c.text for i in items.data for c in i.content] == ["remember the word teal"]
    follow = await owner.responses.create(model="deepseek-chat", input="which word?",
                                          previous_response_id=first.id, store=True)
    assert "remember the word teal" in fake_upstream.calls_to("chat/completion")[-1].body["prompt"]
    with pytest.raises(openai.NotFoundError):  # another caller: as if it did not exist
        await client("sk-other-b").responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        await client("sk-other-b").responses.delete(gone.id)
    await owner.responses.delete(gone.id)
    await group.restart(0)
    owner = client("sk-owner-a")
    assert (await owner.responses.retrieve(follow.id)).previous_response_id == first.id
    with pytest.raises(openai.NotFoundError):
        await owner.responses.retrieve(gone.id)


def kept(path, ttl: list[float], clock: Clock, **kwargs) -> tuple[SQLiteStore, SQLiteResponses]:
    store = SQLiteStore(path)
    return store, SQLiteResponses(store, lambda: ttl[0], clock=clock, **kwargs)


async def test_kept_responses_honour_the_live_ttl_the_owner_and_the_count_bound(tmp_path):
    clock, ttl = Clock(1_000_000.0), [100.0]
    store, responses = kept(tmp_path / "s.sqlite", ttl, clock, max_entries=3)
    for n in range(4):
        await responses.keep("alice", {"id": f"resp_{n}", "output": []}, [n])
        clock.now += 1
    assert await responses.fetch("alice", "resp_0") is None  # past the bound, oldest first
    assert (await responses.fetch("alice", "resp_1")).input_items == [1]
    assert await responses.fetch("bob", "resp_1") is None
    assert not await responses.drop("bob", "resp_1")
    ttl[0] = 2.5  # shortened: older entries are hidden at once
    assert await responses.fetch("alice", "resp_1") is None
    assert await responses.fetch("alice", "resp_3") is not None
    assert not await responses.drop("alice", "resp_1")
    clock.now += 5
    assert await responses.fetch("alice", "resp_3") is None
    await store.close()


async def test_a_state_file_that_is_no_database_keeps_responses_in_memory(tmp_path, caplog):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not an sqlite database at all" * 200)
    store, responses = kept(path, [100.0], Clock(1_000_000.0))
    await responses.keep("alice", {"id": "resp_x", "output": []}, [])
    assert (await responses.fetch("alice", "resp_x")).response["id"] == "resp_x"
    assert "kept in memory only" in caplog.text
    await store.close()


async def test_a_locked_state_file_is_a_503_not_a_hang_or_a_500(tmp_path):
    path = tmp_path / "s.sqlite"
    store, responses = kept(path, [100.0], Clock(1_000_000.0))
    await responses.keep("alice", {"id": "resp_1", "output": []}, [])
    store.connection().execute("PRAGMA busy_timeout = 50")  # no 10 s wait in a test
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StateUnavailable):
            await responses.keep("alice", {"id": "resp_2", "output": []}, [])
        with pytest.raises(StateUnavailable):
            await responses.fetch("alice", "resp_1")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert await responses.fetch("alice", "resp_1") is not None
    assert await responses.fetch("alice", "resp_2") is None
    await store.close()


async def test_a_renamed_keys_tokens_today_outlive_a_restart(
        fake_upstream: FakeDeepSeek, instances) -> None:
    """Today's tokens were seeded at start from the request log's rollups by
    key NAME: after a rename and a restart the tokens used under the old
    name were not counted, so a key at its daily quota was served again
    (and with usage.enabled off nothing was seeded at all)."""
    config = base_config(fake_upstream)
    config["keys"] = [{"name": "team", "key": "sk-team-secret", "limits": {"tokens_per_day": 5}}]
    config["usage"] = {"enabled": False}
    group: Instances = await instances(config, 1)
    assert await ask(group.running[0], "sk-team-secret")
    async with aiohttp.ClientSession() as http:
        admin = AdminClient(http, group.running[0])
        await admin.login(group.admin_key)
        status, body = await admin.call("GET", "/admin/keys")
        [view] = body["keys"]
        used = view["usage"]["tokens_per_day"]["used"]
        assert used >= 5
        status, _ = await admin.call("PATCH", f"/admin/keys/{view['id']}", {"name": "renamed"})
        assert status == 200
    inst = await group.restart(0)
    async with aiohttp.ClientSession() as http:
        admin = AdminClient(http, inst)
        await admin.login(group.admin_key)
        _, body = await admin.call("GET", "/admin/keys")
    assert [(k["name"], k["usage"]["tokens_per_day"]["used"]) for k in body["keys"]] == [
        ("renamed", used)]
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(inst, "sk-team-secret")
    assert caught.value.body["code"] == "key_token_quota"


async def test_a_write_the_locked_state_file_refused_is_made_when_it_frees(tmp_path, caplog):
    """One write refused by a lock (another program holding the file past the
    timeout) turned the whole state store to memory for good: account health
    and the keys' day totals were never written again until a restart."""
    path = tmp_path / "s.sqlite"
    store = SQLiteStore(path)
    store.put("ns", "a", {"n": 1})
    await store.flush()
    store.connection().execute("PRAGMA busy_timeout = 50")  # no 10 s wait in a test
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    store.put("ns", "a", {"n": 2})
    await store.flush()
    await store.flush()  # the retry: a lock past it is logged
    holder.execute("ROLLBACK")
    holder.close()
    assert "could not be written" in caplog.text
    store.put("ns", "b", {"n": 3})
    await store.flush()
    await store.close()
    again = SQLiteStore(path)
    assert await again.load("ns") == {"a": {"n": 2}, "b": {"n": 3}}
    await again.close()


async def test_a_read_only_state_file_keeps_responses_in_memory_not_a_503_each(tmp_path, caplog):
    """A file that refuses writes for good (read-only, full) made every
    stored response a 503 like a passing lock."""
    store, responses = kept(tmp_path / "s.sqlite", [100.0], Clock(1_000_000.0))
    await responses.keep("alice", {"id": "resp_1", "output": []}, [])
    await asyncio.get_running_loop().run_in_executor(
        store.executor, lambda: store.connection().execute("PRAGMA query_only = ON"))
    await responses.keep("alice", {"id": "resp_2", "output": []}, [])
    assert (await responses.fetch("alice", "resp_2")).response["id"] == "resp_2"
    assert "kept in memory only" in caplog.text
    await store.close()


async def test_expired_responses_leave_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(kept_responses, "EXPIRE_EVERY", 0.0)
    clock = Clock(1_000_000.0)
    store, responses = kept(tmp_path / "s.sqlite", [100.0], clock)
    await responses.keep("alice", {"id": "resp_old", "output": []}, ["secret words"])
    clock.now += 101
    assert await responses.fetch("alice", "anything") is None
    await store.close()
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 0


async def test_kept_responses_are_encoded_and_decoded_off_the_loop(tmp_path, monkeypatch):
    """A stored response's items may be megabytes of input: encoding them
    for the file (and decoding them back) ran on the event loop."""
    threads: list[str] = []

    class Watched:
        @staticmethod
        def dumps(value):
            threads.append(threading.current_thread().name)
            return orjson.dumps(value)

        @staticmethod
        def loads(raw):
            threads.append(threading.current_thread().name)
            return orjson.loads(raw)

    monkeypatch.setattr(kept_responses, "orjson", Watched)
    store, responses = kept(tmp_path / "s.sqlite", [100.0], Clock(1_000_000.0))
    await responses.keep("alice", {"id": "resp_1", "output": []}, ["x" * 100_000])
    assert (await responses.fetch("alice", "resp_1")).input_items == ["x" * 100_000]
    assert len(threads) == 2 and threading.main_thread().name not in threads
    await store.close()


async def test_a_locked_state_file_holds_no_stored_response_behind_a_refused_write(
        tmp_path, monkeypatch, caplog):
    """Another program holding the state file locked made each write of the
    account health or a key's day total wait 10 s (SQLite's timeout) on the
    file's one thread, and every stored-response read of a request queued
    behind it. The write now waits half a second, the read answers (a 503 to
    retry: the file refuses it too), and the refused change is written once
    the file frees, with no other change to carry it, logged once."""
    monkeypatch.setattr(sqlite_state, "RETRY_SECONDS", 0.05)
    path = tmp_path / "s.sqlite"
    store, responses = kept(path, [100.0], Clock(1_000_000.0))
    await responses.keep("alice", {"id": "resp_1", "output": []}, [])
    store.put("ns", "a", {"n": 1})
    await store.flush()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for n in (2, 3):
            store.put("ns", "a", {"n": n})
            with pytest.raises(StateUnavailable):
                await asyncio.wait_for(responses.fetch("alice", "resp_1"), 5)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    async def written() -> bool:
        with sqlite3.connect(path) as db:
            found = db.execute("SELECT value FROM records WHERE key = 'a'").fetchone()
        return orjson.loads(found[0]) == {"n": 3}

    await within(10, written)
    assert (await responses.fetch("alice", "resp_1")).response["id"] == "resp_1"
    assert caplog.text.count("could not be written") == 1
    assert "is written again" in caplog.text
    await store.close()


async def test_stored_responses_are_read_while_another_program_holds_the_write_lock(
        tmp_path, monkeypatch, caplog):
    """On a state file in WAL mode (the usage store's) another program's
    write lock (a backup or replication tool's checkpoint, a sqlite3 shell in
    a transaction) leaves reads free, but each call first deleted the expired
    entries: that delete waited for the lock and failed, so GET of a stored
    response and every previous_response_id was a 503 the file could have
    answered. The clean-up waits for a later call instead."""
    monkeypatch.setattr(kept_responses, "EXPIRE_EVERY", 0.0)
    path = tmp_path / "s.sqlite"
    usage = SQLiteUsage(str(path))  # puts the file in WAL mode, as a server does
    store, responses = kept(path, [100.0], Clock(1_000_000.0))
    await responses.keep("alice", {"id": "resp_1", "output": []}, [])
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(2):
            found = await responses.fetch("alice", "resp_1")
            assert found is not None and found.response["id"] == "resp_1"
        with pytest.raises(StateUnavailable):  # a write still needs the lock
            await responses.keep("alice", {"id": "resp_2", "output": []}, [])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert caplog.text.count("expired stored responses not deleted yet") == 1
    await responses.keep("alice", {"id": "resp_2", "output": []}, [])
    assert (await responses.fetch("alice", "resp_2")) is not None
    await store.close()
    await usage.close()


async def test_kept_responses_are_bounded_in_bytes_not_only_in_count(tmp_path):
    """Only the count was bounded: with bodies up to 64 MiB, 1024 stored
    responses could fill 64 GiB of the disk the request log and account
    health share. Past the byte budget the oldest go; the newest stays
    whatever its size (a follow-up continues from it)."""
    clock = Clock(1_000_000.0)
    store, responses = kept(tmp_path / "s.sqlite", [1000.0], clock, max_bytes=10_000)
    for n in range(4):
        await responses.keep("alice", {"id": f"resp_{n}", "output": []}, ["x" * 3000])
        clock.now += 1
    assert await responses.fetch("alice", "resp_0") is None
    assert [await responses.fetch("alice", f"resp_{n}") is not None for n in (1, 2, 3)] == [
        True, True, True]
    await responses.keep("alice", {"id": "resp_big", "output": []}, ["é" * 20_000])
    assert (await responses.fetch("alice", "resp_big")).input_items == ["é" * 20_000]
    assert [await responses.fetch("alice", f"resp_{n}") for n in (1, 2, 3)] == [None] * 3
    clock.now += 1
    await responses.keep("alice", {"id": "resp_small", "output": []}, ["y"])
    assert await responses.fetch("alice", "resp_big") is None  # the newest fits alone
    assert await responses.fetch("alice", "resp_small") is not None
    await store.close()


async def test_a_state_value_json_cannot_hold_loses_only_itself(tmp_path, caplog):
    """Encoded inside the batch's transaction, one value orjson refuses (an
    integer past 64 bits) rolled back every change written beside it, with
    nothing logged: the others were lost without a word."""
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.put("ns", "before", {"n": 1})
    store.put("ns", "bad", {"n": 2**70})
    store.put("ns", "after", {"n": 3})
    await store.flush()
    await store.close()
    again = SQLiteStore(tmp_path / "s.sqlite")
    assert await again.load("ns") == {"before": {"n": 1}, "after": {"n": 3}}
    assert "ns/bad could not be written" in caplog.text
    await again.close()


async def test_a_state_file_another_program_locks_keeps_the_server_answering(
        proxy_factory: ProxyFactory, tmp_path, monkeypatch) -> None:
    """On the wire: while a second sqlite3 connection holds the state file
    locked, turns are served, the request log answers (without the row the
    file refuses yet), a stored response is read back, and the refused row
    reaches the log once the lock is gone, with no new request to carry it."""
    monkeypatch.setattr(usage_module, "RETRY_SECONDS", 0.05)
    monkeypatch.setattr(sqlite_state, "RETRY_SECONDS", 0.05)
    proxy = await proxy_factory({"keys": [{"name": "team", "key": "sk-team"}]})
    client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="sk-team", max_retries=0)
    first = await client.responses.create(model="deepseek-chat", input="remember teal",
                                          store=True)
    await proxy.core.usage.store.flush()
    holder = sqlite3.connect(tmp_path / "config-0.state.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        try:
            await client.chat.completions.create(model="deepseek-chat", messages=USER)
            page = await asyncio.wait_for(admin.ok("GET", "/admin/usage/requests"), 5)
            assert [r["route"] for r in page["requests"]] == ["/v1/responses"]  # as it was
            assert (await client.responses.retrieve(first.id)).id == first.id
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        async def caught_up() -> bool:
            page = await admin.ok("GET", "/admin/usage/requests")
            return "/v1/chat/completions" in [r["route"] for r in page["requests"]]

        await within(10, caught_up)


async def test_a_damaged_state_record_is_left_out_not_a_failed_start(tmp_path, caplog):
    """A record whose value is not a JSON object (a damaged file, a row
    another program wrote) raised from load: the server's start-up, which
    loads the account health and the keys' day totals, failed with it."""
    path = tmp_path / "s.sqlite"
    store = SQLiteStore(path)
    store.put("ns", "good", {"n": 1})
    await store.close()
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO records VALUES ('ns', ?, ?)",
                       [("garbled", b"\x00{not json"), ("a-list", b"[1, 2]"), (7, b"{}")])
    again = SQLiteStore(path)
    assert await again.load("ns") == {"good": {"n": 1}, "7": {}}
    assert "ns/garbled in the state file is not a JSON object" in caplog.text
    assert "ns/a-list" in caplog.text
    await again.close()


async def test_a_damaged_stored_response_reads_as_missing_not_a_500(tmp_path, caplog):
    clock = Clock(1_000_000.0)
    store, responses = kept(tmp_path / "s.sqlite", [100.0], clock)
    for name in ("resp_garbled", "resp_partial", "resp_list"):
        await responses.keep("alice", {"id": name, "output": []}, ["hi"])
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        db.executemany("UPDATE responses SET doc = ? WHERE id = ?", [
            (b"\x00{garbled", "resp_garbled"), (b'{"response": {}}', "resp_partial"),
            (b"[1]", "resp_list")])
    for name in ("resp_garbled", "resp_partial", "resp_list"):
        assert await responses.fetch("alice", name) is None
        assert f"stored response {name} in the state file is damaged" in caplog.text
    await store.close()


async def test_a_lock_at_the_first_stored_response_does_not_move_them_to_memory(tmp_path):
    """The first stored response makes its table; a lock held by another
    program at that moment was taken for a file that cannot be used, and
    every stored response went to memory for the rest of the run (gone at
    the next restart). It is a 503 for that call; the next one uses the file."""
    path = tmp_path / "s.sqlite"
    store, responses = kept(path, [100.0], Clock(1_000_000.0))
    store.put("ns", "a", {"n": 1})
    await store.flush()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StateUnavailable):
            await responses.keep("alice", {"id": "resp_1", "output": []}, [])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await responses.keep("alice", {"id": "resp_1", "output": []}, [])
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id FROM responses").fetchall() == [("resp_1",)]


async def test_a_state_file_locked_at_start_is_not_given_up_for_the_run(
        tmp_path, monkeypatch, caplog):
    """Locked by another program when the server starts (past the open's
    wait), the state file was taken for one that cannot be used: account
    health and the keys' day totals lived in memory for the whole run and
    were lost at the next restart. It starts empty (logged), and the changes
    are written once the lock is gone."""
    monkeypatch.setattr(sqlite_state, "OPEN_TIMEOUT", 0.05)
    monkeypatch.setattr(sqlite_state, "RETRY_SECONDS", 0.05)
    path = tmp_path / "s.sqlite"
    first = SQLiteStore(path)
    first.put("ns", "old", {"n": 1})
    await first.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    store = SQLiteStore(path)
    try:
        assert await store.load("ns") == {}
        store.put("ns", "new", {"n": 2})
        await store.flush()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "is locked by another program; ns starts empty" in caplog.text

    async def written() -> bool:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 2

    await within(10, written)
    await store.close()
    again = SQLiteStore(path)
    assert await again.load("ns") == {"old": {"n": 1}, "new": {"n": 2}}
    await again.close()
