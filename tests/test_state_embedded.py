"""The embedded backend keeps everything in ONE SQLite file beside the
config, and a former separate usage file is imported into it once."""

from __future__ import annotations

import sqlite3
import time

import openai
from conftest import ProxyFactory
from test_state_contract import row

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
