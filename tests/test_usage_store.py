"""The SQLite usage store: rollups per grain, grouping, retention, restart."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from test_state_instances import within

from ds2proxy.observe_settings import UsageSettings
from ds2proxy.request_record import RequestRecord
from ds2proxy.state import usage, usage_prune
from ds2proxy.state.backend import StateBackend
from ds2proxy.state.errors import StateUnavailable
from ds2proxy.state.sqlite import SQLiteStore
from ds2proxy.state.usage import SCHEMA, SQLiteUsage, _raise
from ds2proxy.state.usage_schema import where_clause as _where


@contextmanager
def locked_by_another_program(path: Path) -> Iterator[None]:
    """A second connection holding the file's write lock, as another program would."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def row(ts: float, **fields) -> dict:
    record = RequestRecord(request_id=f"r{ts}", family=fields.pop("family", "openai"),
                           route="/v1/chat/completions", time=ts, key_name="k", model="m",
                           account="a", status=200, prompt_tokens=3, completion_tokens=4)
    for name, value in fields.items():
        setattr(record, name, value)
    return record.fields()


async def test_rollups_group_per_key_model_account_and_family(tmp_path: Path):
    store = SQLiteUsage(str(tmp_path / "u.db"))
    now = time.time()
    store.record(row(now))
    store.record(row(now, key_name="other", status=429, error_code="key_rate_limit"))
    store.record(row(now, family="claude", prompt_tokens=10))
    totals = {r["name"]: r for r in await store.totals("key_name", "minute", now - 60)}
    assert totals["k"]["requests"] == 2 and totals["k"]["prompt_tokens"] == 13
    assert totals["other"]["errors"] == 1
    families = {r["name"]: r["requests"] for r in await store.totals("family", "day", 0)}
    assert families == {"openai": 2, "claude": 1}
    [bucket] = await store.series("hour", now - 3600)
    assert bucket["requests"] == 3 and bucket["errors"] == 1 and bucket["completion_tokens"] == 12
    [only] = await store.series("hour", now - 3600, "other")
    assert only["requests"] == 1
    rows, total = await store.requests({"errors": True}, 10, 0)
    assert total == 1 and rows[0]["error_code"] == "key_rate_limit"
    await store.close()


async def test_retention_drops_old_rows_and_keeps_coarser_rollups(tmp_path: Path):
    now = time.time()
    store = SQLiteUsage(str(tmp_path / "u.db"), raw_days=7, hourly_days=90)
    store.record(row(now - 8 * 86400))     # past raw retention, within hourly
    store.record(row(now - 100 * 86400))   # past hourly retention, within daily
    store.record(row(now))
    await store.flush()
    rows, total = await store.requests({}, 10, 0)
    assert total == 1 and rows[0]["time"] == pytest.approx(now)
    assert sum(r["requests"] for r in await store.totals("key_name", "minute", 0)) == 1
    assert sum(r["requests"] for r in await store.totals("key_name", "hour", 0)) == 2
    assert sum(r["requests"] for r in await store.totals("key_name", "day", 0)) == 3
    await store.close()


async def test_a_reopened_store_has_everything_written_before(tmp_path: Path):
    path = str(tmp_path / "u.db")
    store = SQLiteUsage(path)
    for i in range(500):
        store.record(row(time.time(), completion_tokens=i))
    await store.close()
    again = SQLiteUsage(path)
    [total] = await again.totals("model", "day", 0)
    assert total["requests"] == 500 and total["completion_tokens"] == sum(range(500))
    assert again.rows_written == 0
    await again.close()


def test_an_unopenable_path_fails_at_start(tmp_path: Path):
    with pytest.raises(sqlite3.OperationalError):
        SQLiteUsage(str(tmp_path / "missing-folder" / "u.db"))



async def test_every_request_log_filter_reads_an_index_also_on_an_older_file(tmp_path: Path):
    """The filters had no index but the request id's: each filtered page
    counted and sorted the whole table (half a second on two million rows).
    A file made before the indexes gets them at its first start."""
    path = tmp_path / "old.state.sqlite"
    with sqlite3.connect(path) as db:  # the schema as it was: time and request id only
        db.executescript(SCHEMA)
    store = SQLiteUsage(str(path))
    now = time.time()
    for n in range(30):
        store.record(row(now + n, key_name=f"k{n % 2}", status=500 if n % 5 == 0 else 200))
    rows, total = await store.requests({"key_name": "k0", "errors": True}, 10, 0)
    assert total == 3 and [r["status"] for r in rows] == [500, 500, 500]
    await store.close()
    plans = {}
    with sqlite3.connect(path) as db:
        for name, value in (("key_name", "k1"), ("model", "m"), ("status", 500),
                            ("account", "a"), ("family", "openai"), ("request_id", "r1"),
                            ("errors", True)):
            where, args = _where({name: value})
            plan = db.execute(f"EXPLAIN QUERY PLAN SELECT id FROM requests{where} "
                              "ORDER BY id DESC LIMIT 50", args).fetchall()
            plans[name] = " ".join(step[-1] for step in plan)
    assert all("USING" in plan and "INDEX" in plan for plan in plans.values()), plans


async def test_rows_the_locked_file_refused_are_written_when_it_frees(tmp_path: Path):
    """A batch the file refused (another program holding it locked past the
    timeout) was logged and dropped: those requests were gone from the log,
    the rollups and the day's totals for good."""
    path = tmp_path / "u.db"
    store = SQLiteUsage(str(path))
    await store._call(lambda db: db.execute("PRAGMA busy_timeout = 50"))  # no 10 s wait
    with locked_by_another_program(path):
        now = time.time()
        store.record(row(now, request_id="while-locked"))
        await store.flush()
    store.record(row(now + 1, request_id="after"))
    rows, total = await store.requests({}, 10, 0)
    assert total == 2 and {r["request_id"] for r in rows} == {"while-locked", "after"}
    [day] = await store.totals("key_name", "day", 0)
    assert day["requests"] == 2
    await store.close()


async def test_a_row_sqlite_cannot_hold_loses_only_itself(tmp_path: Path):
    """One row with an integer past 64 bits failed its whole batch: every
    request recorded beside it was dropped with it."""
    store = SQLiteUsage(str(tmp_path / "u.db"))
    now = time.time()
    store.record(row(now, request_id="before"))
    store.record(row(now, request_id="bad", prompt_tokens=2**70))
    store.record(row(now, request_id="after"))
    rows, total = await store.requests({}, 10, 0)
    assert {r["request_id"] for r in rows} == {"before", "after"}
    await store.close()


async def test_a_clock_set_back_does_not_stall_retention(tmp_path: Path, monkeypatch):
    """Pruning was scheduled on the wall clock: set back a day (a restored
    VM, an NTP step), the next prune waited for the clock to catch up, and
    rows past retention stayed for that day."""
    monkeypatch.setattr(usage, "_PRUNE_EVERY", 0.05)
    store = SQLiteUsage(str(tmp_path / "u.db"), raw_days=7)
    now = time.time()
    store.record(row(now, request_id="fresh"))
    await store.flush()  # the first prune ran at the wall clock's now
    monkeypatch.setattr(usage.time, "time", lambda: now - 86400)
    store.record(row(now - 9 * 86400, request_id="past-retention"))

    async def pruned() -> bool:
        store.record(row(now, request_id="tick"))  # the writer prunes after a batch
        rows, _ = await store.requests({"request_id": "past-retention"}, 1, 0)
        return not rows

    await within(5, pruned)
    await store.close()


def test_a_prune_deletes_exactly_what_is_past_retention(tmp_path: Path):
    """Each kind of row up to its cut-off goes (a row at the cut-off stays),
    a few rows per transaction, whatever the batch size leaves over."""
    db = sqlite3.connect(tmp_path / "u.db")
    db.executescript(SCHEMA)
    now = 1_700_000_000.0
    cuts = usage_prune.cut_offs(now, 7, 90)
    raw, _, hourly, daily = cuts
    times = [raw - 86400 * n for n in range(1, 12)] + [raw - 0.001, raw, raw + 0.001, now]
    db.executemany("INSERT INTO requests (time, request_id) VALUES (?, ?)",
                   [(t, f"r{t}") for t in times])
    buckets = {"minute": raw, "hour": hourly, "day": daily}
    for grain, cut in buckets.items():
        for bucket in [int(cut) - 3600 * n for n in range(1, 9)] + [int(cut), int(now)]:
            db.execute("INSERT INTO rollups VALUES (?,?,'k','m','a','f',1,0,1,1,0,1.0,'')",
                       (grain, bucket))
    db.commit()
    batches = list(usage_prune.prune_steps(db, cuts, batch=3))
    assert max(batches) == 3 and sum(batches) == 12 + 3 * 8
    assert [t for (t,) in db.execute("SELECT time FROM requests ORDER BY time")] == [
        raw, raw + 0.001, now]
    for grain, cut in buckets.items():
        kept = [b for (b,) in db.execute(
            "SELECT bucket FROM rollups WHERE grain = ? ORDER BY bucket", (grain,))]
        assert kept == [int(cut), int(now)], grain
    db.close()


async def test_a_long_prune_lets_rows_and_reads_through_between_its_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A shortened retention deleted every row past it in one transaction:
    on millions of rows the file's write lock was held (every other write of
    the process waiting) and the write-ahead log grew by all of it. Rows
    recorded and reads asked during the prune are served between batches."""
    monkeypatch.setattr(usage_prune, "BATCH", 10)
    store = SQLiteUsage(str(tmp_path / "u.db"), raw_days=30)
    now = time.time()
    for n in range(100):
        store.record(row(now - 10 * 86400 - n, request_id="old"))
    await store.flush()
    loop = asyncio.get_running_loop()
    midway: asyncio.Future = loop.create_future()
    real_steps = usage.prune_steps

    def steps(db, cuts):
        inner = real_steps(db, cuts)
        yield next(inner)
        # Queued while the prune is under way, as a request and a read would be.
        store.record(row(now, request_id="during"))
        store._queue.put(("job", lambda db: db.execute(
            "SELECT request_id, COUNT(*) FROM requests GROUP BY request_id").fetchall(),
            midway, loop))
        yield from inner

    monkeypatch.setattr(usage, "prune_steps", steps)
    store.retain(7, 90)
    seen = {name: count for name, count in await midway}
    assert seen["during"] == 1 and 0 < seen["old"] < 100

    async def pruned() -> bool:
        return (await store.requests({"request_id": "old"}, 1, 0))[1] == 0

    await within(10, pruned)
    rows, total = await store.requests({}, 10, 0)
    assert total == 1 and rows[0]["request_id"] == "during"
    await store.close()


async def test_a_file_another_program_locks_holds_neither_reads_nor_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """Another program holding the file locked made each batch wait 10 s
    (SQLite's timeout) with every read queued behind it. Reads now answer
    from what the file has, the refused rows are kept and written once it
    frees (with no new request to carry them), and it is logged once."""
    monkeypatch.setattr(usage, "RETRY_SECONDS", 0.05)
    path = tmp_path / "u.db"
    store = SQLiteUsage(str(path))
    now = time.time()
    store.record(row(now, request_id="before"))
    await store.flush()
    with locked_by_another_program(path):
        for n in range(3):
            store.record(row(now + n, request_id=f"locked-{n}"))
            rows, total = await asyncio.wait_for(store.requests({}, 10, 0), 5)
            assert [r["request_id"] for r in rows] == ["before"] and total == 1

    async def caught_up() -> bool:
        return (await store.requests({}, 10, 0))[1] == 4

    await within(10, caught_up)
    [day] = await store.totals("key_name", "day", 0)
    assert day["requests"] == 4
    assert caplog.text.count("the file refused") == 1
    assert "the file is written again" in caplog.text
    await store.close()


async def test_a_read_after_the_writer_ended_is_refused_not_left_waiting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A read queued once the writer thread had ended (the store closed at
    shutdown with an admin page still loading, or the thread killed by a
    bug) waited forever: nobody was left to answer it."""
    store = SQLiteUsage(str(tmp_path / "u.db"))
    store.record(row(time.time()))
    await store.close()
    with pytest.raises(StateUnavailable):
        await asyncio.wait_for(store.requests({}, 10, 0), 10)
    await store.close()  # twice: nothing left to do
    broken = SQLiteUsage(str(tmp_path / "v.db"))
    monkeypatch.setattr(broken, "_tidy", lambda db: _raise(RuntimeError("a bug")))
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    broken.record(row(time.time()))
    await broken.flush()  # answered; the bug ends the writer right after
    with pytest.raises(StateUnavailable):
        await asyncio.wait_for(broken.requests({}, 10, 0), 10)
    with pytest.raises(StateUnavailable):
        await asyncio.wait_for(broken.flush(), 10)


async def test_rows_dropped_past_the_held_bound_are_logged_once_and_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """Past the bound of rows kept for a file that refuses writes, every
    batch logged an error of its own: a busy server behind a long lock wrote
    one per batch, many a second. Now one, and the count when it is back."""
    monkeypatch.setattr(usage, "MAX_HELD", 3)
    path = tmp_path / "u.db"
    store = SQLiteUsage(str(path))
    await store.flush()
    with locked_by_another_program(path):
        for n in range(10):
            store.record(row(time.time(), request_id=f"r{n}"))
            await store.flush()
    store.record(row(time.time(), request_id="after"))
    rows, total = await store.requests({}, 10, 0)
    assert [r["request_id"] for r in rows] == ["after", "r9", "r8", "r7"] and total == 4
    assert caplog.text.count("the oldest are dropped") == 1
    assert "written again (7 rows it refused were dropped)" in caplog.text
    await store.close()


# Run in a child process: the file-size limit applies to the whole process.
_FULL_DISK = """
import asyncio, os, resource, sys, time
from ds2proxy.request_record import RequestRecord
from ds2proxy.state import usage
usage.RETRY_SECONDS = 0.05

def row(n):
    return RequestRecord(request_id=f"r{n}", family="openai", route="/", time=time.time(),
                         key_name="k", model="m", account="a", status=200,
                         request_body="x" * 2000).fields()

async def main(path):
    store = usage.SQLiteUsage(path)
    await store.flush()
    size = sum(os.path.getsize(path + end) for end in ("", "-wal") if os.path.exists(path + end))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 200_000, hard))  # the disk fills
    for n in range(300):
        store.record(row(n))
        if n % 20 == 0:
            await store.flush()
    print("while full", (await store.requests({}, 1, 0))[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
    while (await store.requests({}, 1, 0))[1] < 300:
        await asyncio.sleep(0.02)
    [day] = await store.totals("key_name", "day", 0)
    print("after", day["requests"])
    await store.close()

asyncio.run(main(sys.argv[1]))
"""


def test_a_full_disk_loses_no_row_and_writes_them_when_there_is_room(tmp_path: Path):
    """A disk that fills (here the process's file-size limit) refuses the
    writes; the rows are kept, reads still answer, and once there is room
    every row and its rollups are written, with no new request to carry them."""
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path / "u.db")],
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    during, after = done.stdout.splitlines()
    assert 0 < int(during.split()[-1]) < 300 and after == "after 300"
    assert done.stderr.count("the file refused") == 1 and "written again" in done.stderr


async def test_rows_held_for_a_refusing_file_keep_a_bounded_amount_of_bodies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """With usage.log_bodies, each held row kept its body (up to a megabyte):
    100,000 rows held through a long lock or a full disk could take a
    hundred gigabytes of memory. The newest bodies are kept up to a budget;
    older rows are kept (their usage counts) without theirs."""
    monkeypatch.setattr(usage, "HELD_BODY_CHARS", 10)
    path = tmp_path / "u.db"
    store = SQLiteUsage(str(path))
    await store.flush()
    with locked_by_another_program(path):
        for n in range(3):
            store.record(row(time.time(), request_id=f"r{n}", request_body=f"body-{n}"))
            await store.flush()
    store.record(row(time.time(), request_id="after"))
    _, total = await store.requests({}, 10, 0)
    bodies = {}
    for n in range(1, total + 1):
        found = await store.request(n)
        bodies[found["request_id"]] = found["request_body"]
    assert bodies == {"r0": "", "r1": "", "r2": "body-2", "after": ""}
    assert caplog.text.count("the oldest are kept without theirs") == 1
    assert "(2 bodies were not kept)" in caplog.text
    await store.close()


async def test_a_lock_gone_by_the_retry_is_not_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """A write now waits half a second for the lock, not 10 s: the state
    file's other connection keeping a large stored response (seconds for
    tens of megabytes) may outlast that. Such a lock, gone by the retry, is
    not an outage to warn about; the rows are written all the same."""
    monkeypatch.setattr(usage, "RETRY_SECONDS", 0.05)
    path = tmp_path / "u.db"
    store = SQLiteUsage(str(path))
    await store.flush()
    with locked_by_another_program(path):
        store.record(row(time.time(), request_id="during"))
        await store.flush()

    async def written() -> bool:
        return (await store.requests({}, 10, 0))[1] == 1

    await within(10, written)
    assert "refused" not in caplog.text and "written again" not in caplog.text
    await store.close()


async def test_a_file_locked_at_the_first_start_is_opened_once_it_frees(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """The state file, made by the records store only (still in rollback
    journal mode: switching it to WAL needs its lock), held locked by another
    program when usage opened: after the open's wait usage was kept in memory
    for the whole run. The rows recorded meanwhile now end up in the file."""
    monkeypatch.setattr(usage, "RETRY_SECONDS", 0.05)
    monkeypatch.setattr(usage, "OPEN_WAIT_SECONDS", 0.1)
    path = tmp_path / "config.json.state.sqlite"
    records = SQLiteStore(path)
    records.put("health", "a", {"ok": True})
    await records.close()
    backend = StateBackend(SQLiteStore(path), path)
    now = time.time()
    with locked_by_another_program(path):
        store = await backend.open_usage(UsageSettings())
        store.record(row(now, request_id="while-locked"))
        with pytest.raises(StateUnavailable):
            await store.requests({}, 10, 0)

    async def in_the_file() -> bool:
        with contextlib.closing(sqlite3.connect(path)) as reader:
            try:
                found = reader.execute("SELECT request_id FROM requests").fetchall()
            except sqlite3.OperationalError:  # no table yet, or the switch under way
                return False
        return found == [("while-locked",)]

    await within(10, in_the_file)
    store.record(row(now + 1, request_id="after"))
    assert (await store.requests({}, 10, 0))[1] == 2
    assert "kept in memory" not in caplog.text
    await store.close()
    await backend.records.close()
