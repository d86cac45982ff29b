"""The per-caller TTL store for Responses, driven by an injected clock."""

from __future__ import annotations

from clock_util import Clock
from plugins.openai.responses_store import ResponseStore


def response(n: int) -> dict:
    return {"id": f"resp_{n}", "output": [{"type": "message", "n": n}]}


def test_entry_is_readable_by_its_owner_until_the_ttl_passes() -> None:
    clock = Clock()
    store = ResponseStore(lambda: 900, clock=clock)
    store.put("alice", response(1), [{"role": "user", "content": "hi"}])
    clock.now += 899
    assert store.get("alice", "resp_1") is not None
    clock.now += 1
    assert store.get("alice", "resp_1") is None
    assert len(store) == 0


def test_another_caller_cannot_see_an_entry() -> None:
    store = ResponseStore(lambda: 900, clock=Clock())
    store.put("alice", response(1), [])
    assert store.get("bob", "resp_1") is None
    assert store.get("alice", "resp_1") is not None


def test_ttl_is_read_live() -> None:
    clock, ttl = Clock(), [900.0]
    store = ResponseStore(lambda: ttl[0], clock=clock)
    store.put("alice", response(1), [])
    clock.now += 60
    ttl[0] = 30
    assert store.get("alice", "resp_1") is None


def test_count_is_capped_oldest_first() -> None:
    store = ResponseStore(lambda: 900, clock=Clock(), max_entries=3)
    for n in range(5):
        store.put("alice", response(n), [])
    assert len(store) == 3
    assert store.get("alice", "resp_0") is None and store.get("alice", "resp_1") is None
    assert store.get("alice", "resp_4") is not None


def test_expired_entries_are_evicted_when_storing() -> None:
    clock = Clock()
    store = ResponseStore(lambda: 10, clock=clock)
    store.put("alice", response(1), [])
    clock.now += 11
    store.put("alice", response(2), [])
    assert len(store._entries) == 1


def test_history_is_the_input_then_the_output() -> None:
    store = ResponseStore(lambda: 900, clock=Clock())
    store.put("alice", response(7), [{"role": "user", "content": "q"}])
    entry = store.get("alice", "resp_7")
    assert entry is not None
    assert entry.history == [{"role": "user", "content": "q"}, {"type": "message", "n": 7}]
