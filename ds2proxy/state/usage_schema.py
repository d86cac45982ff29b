"""The embedded usage store's tables and the SQL its reads and writes build.

``requests`` holds one row per request (``ROW_FIELDS``), ``rollups`` the
per-minute/hour/day sums per key, model, account and family.
"""

from __future__ import annotations

from typing import Any

GRAINS = {"minute": 60, "hour": 3600, "day": 86400}
ROW_FIELDS = ("time", "request_id", "key_name", "family", "route", "method", "model",
              "native_model", "account", "status", "error_code", "error_message", "latency_ms",
              "ttfb_ms", "prompt_tokens", "completion_tokens", "reasoning_tokens", "tool_calls",
              "stream", "request_body", "served_by", "key_ref")
# A page of the request log leaves out kept bodies (up to a megabyte each):
# one row's details carry its body.
LISTED = ("id", *(f for f in ROW_FIELDS if f != "request_body"))
FILTERS = ("key_name", "model", "status", "account", "family", "request_id", "key_ref")
GROUPS = ("key_name", "model", "account", "family")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
  id INTEGER PRIMARY KEY, time REAL NOT NULL, request_id TEXT, key_name TEXT, family TEXT,
  route TEXT, method TEXT, model TEXT, native_model TEXT, account TEXT, status INTEGER,
  error_code TEXT, error_message TEXT, latency_ms REAL, ttfb_ms REAL, prompt_tokens INTEGER,
  completion_tokens INTEGER, reasoning_tokens INTEGER, tool_calls INTEGER, stream INTEGER,
  request_body TEXT, served_by TEXT, key_ref TEXT);
CREATE INDEX IF NOT EXISTS requests_time ON requests(time);
CREATE INDEX IF NOT EXISTS requests_request_id ON requests(request_id);
CREATE TABLE IF NOT EXISTS rollups (
  grain TEXT NOT NULL, bucket INTEGER NOT NULL, key_name TEXT NOT NULL, model TEXT NOT NULL,
  account TEXT NOT NULL, family TEXT NOT NULL, requests INTEGER NOT NULL, errors INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL, latency_ms_sum REAL NOT NULL, key_ref TEXT,
  PRIMARY KEY (grain, bucket, key_ref, key_name, model, account, family));
"""
# One index per request-log filter (a row's id rides along in each, so a
# filtered page is read newest first straight from its index), and two
# partial ones of the failed rows (their WHERE is the "errors" filter's, word
# for word): newest first, and by key, so "this key's errors" reads only
# that key's failures.
FAILED = "(status >= 400 OR error_code != '')"
FILTER_INDEXES = {
    **{f"requests_{name}": f"requests({name})" for name in FILTERS if name != "request_id"},
    "requests_failed": f"requests(id) WHERE {FAILED}",
    "requests_failed_keys": f"requests(key_name, model, account, family) WHERE {FAILED}",
}
UPSERT = """
INSERT INTO rollups (grain, bucket, key_name, model, account, family, key_ref, requests, errors,
  prompt_tokens, completion_tokens, reasoning_tokens, latency_ms_sum)
VALUES (?,?,?,?,?,?,?,1,?,?,?,?,?)
ON CONFLICT (grain, bucket, key_ref, key_name, model, account, family) DO UPDATE SET
  requests = requests + 1, errors = errors + excluded.errors,
  prompt_tokens = prompt_tokens + excluded.prompt_tokens,
  completion_tokens = completion_tokens + excluded.completion_tokens,
  reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
  latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum
"""


def rollup_rows(row: dict[str, Any]) -> list[tuple]:
    failed = int(row["status"] >= 400 or bool(row["error_code"]))
    dims = (row["key_name"], row["model"], row["account"], row["family"], row["key_ref"] or "")
    nums = (failed, row["prompt_tokens"], row["completion_tokens"], row["reasoning_tokens"],
            row["latency_ms"])
    return [(grain, int(row["time"] // size) * size, *dims, *nums)
            for grain, size in GRAINS.items()]


def key_condition(key_name: str | None, key_ref: str | None) -> tuple[str, list[Any]]:
    """The rollups' condition for one key's cells: by ref (the key whatever
    it was named), else by the name recorded."""
    if key_ref is not None:
        return "AND key_ref = ?", [key_ref]
    return ("AND key_name = ?", [key_name]) if key_name is not None else ("", [])


def table_of(filters: dict[str, Any]) -> str:
    """The table, pinned to the key's-failures index for one key's errors:
    the planner's sampled statistics took the key's index, counting every
    row of the key (0.4 s for a busy key of a two-million-row log)."""
    if filters.get("errors") and filters.get("key_name") not in (None, ""):
        return "requests INDEXED BY requests_failed_keys"
    return "requests"


def where_clause(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    parts, args = [], []
    for name in FILTERS:
        value = filters.get(name)
        if value not in (None, ""):
            parts.append(f"{name} = ?")
            args.append(value)
    if filters.get("errors"):
        parts.append(FAILED)
    return (" WHERE " + " AND ".join(parts)) if parts else "", args
