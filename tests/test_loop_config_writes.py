"""Config writes and admin edits at thousands of accounts keep the event loop
free: a write copies, edits and validates the document in a worker thread
(still one write at a time, none lost), and edits that match many accounts
or keys look each up in an index instead of scanning the list each time.
Figures: bench/loop_lag_bench.py; these tests pin the behaviour."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from typing import Any

import aiohttp
from admin_util import admin_for
from conftest import ProxyFactory

from ds2proxy.admin.edit_index import AccountIndex, KeyIndex, identifier_of
from ds2proxy.admin.masking import key_id
from ds2proxy.config import header_safe, normalise_mobile
from ds2proxy.doc_merge import copy_tree
from ds2proxy.keyring import secret_of

MANY = 3000


def many_accounts(count: int) -> list[dict[str, str]]:
    return [{"email": f"user{i}@example.com", "password": f"pw-{i}", "token": f"tok-{i}"}
            for i in range(count)]


async def test_writes_validate_in_a_worker_thread_one_at_a_time_and_none_is_lost(
        proxy_factory: ProxyFactory) -> None:
    """Each write's copy, edit and checks ran on the event loop (about 150 ms
    per write at 4,000 accounts, every stream stalled meanwhile); they now run
    in a worker thread, and concurrent writes still never overlap."""
    proxy = await proxy_factory({"accounts": many_accounts(200)})
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    running, most = [0], [0]
    guard = threading.Lock()

    def check(doc: dict[str, Any]) -> None:
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threads.add(threading.get_ident())
        with guard:
            running[0] -= 1

    proxy.store.add_check(check)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        replies = await asyncio.gather(*(
            admin.call("POST", "/admin/keys", json={"key": f"sk-concurrent-{n}"})
            for n in range(30)))
    assert [r.status for r in replies] == [200] * 30
    assert threads and loop_thread not in threads
    assert most[0] == 1
    wanted = {f"sk-concurrent-{n}" for n in range(30)}
    on_disk = {secret_of(k) for k in json.loads(proxy.config_path.read_text())["keys"]}
    assert wanted <= on_disk and wanted <= set(proxy.core.config.key_secrets)


async def test_a_masked_read_of_thousands_of_accounts_imports_back_with_every_secret(
        proxy_factory: ProxyFactory) -> None:
    """An import merge matched each incoming account by a scan of the whole
    list (about 50 s on the event loop at 4,000 accounts); matched through an
    index, it keeps every stored secret and updates, adds and dedupes as before."""
    stored = many_accounts(MANY)
    stored.append({"mobile": "+8613800000000", "password": "pw-mobile"})
    proxy = await proxy_factory({"accounts": stored})
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        read = await admin.ok("GET", "/admin/config")
        assert len(read["accounts"]) == MANY + 1
        read["accounts"][5]["proxy"] = "socks5://127.0.0.1:1080"
        read["accounts"] += [{"email": "fresh@example.com", "password": "pw-fresh"},
                             {"email": "fresh@example.com", "password": "pw-fresh-2"},
                             {"mobile": "138 0000 0000", "password": "pw-mobile-2"}]
        result = await admin.ok("POST", "/admin/config/import?mode=merge", json=read)
    assert result["total_accounts"] == MANY + 2
    doc = json.loads(proxy.config_path.read_text())
    by_id = {identifier_of(a): a for a in doc["accounts"]}
    for i in range(0, MANY, 97):
        account = by_id[f"user{i}@example.com"]
        assert (account["password"], account["token"]) == (f"pw-{i}", f"tok-{i}")
    assert by_id["user5@example.com"]["proxy"] == "socks5://127.0.0.1:1080"
    assert by_id["fresh@example.com"]["password"] == "pw-fresh-2"
    assert by_id["+8613800000000"]["password"] == "pw-mobile-2"


async def test_whole_list_and_batch_writes_of_thousands_of_accounts_match_each_once(
        proxy_factory: ProxyFactory) -> None:
    """POST /admin/config (the masked list sent back, secrets kept) and the
    batch import (updates and new accounts) at thousands of accounts."""
    proxy = await proxy_factory({"accounts": many_accounts(MANY)})
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        read = await admin.ok("GET", "/admin/config")
        listed = [{"identifier": a["identifier"]} for a in reversed(read["accounts"])]
        await admin.ok("POST", "/admin/config", json={"accounts": listed})
        batch = [{"email": f"user{i}@example.com", "password": f"new-{i}"}
                 for i in range(0, MANY, 2)] + [{"token": "tok-batch-only"}]
        result = await admin.ok("POST", "/admin/import", json={"accounts": batch})
    assert (result["imported_accounts"], result["updated_accounts"]) == (1, MANY // 2)
    accounts = json.loads(proxy.config_path.read_text())["accounts"]
    assert [identifier_of(a) for a in accounts[:MANY]] == [a["identifier"] for a in listed]
    by_id = {identifier_of(a): a for a in accounts}
    assert by_id["user2@example.com"]["password"] == "new-2"
    assert by_id["user3@example.com"]["password"] == "pw-3"
    assert by_id["user3@example.com"]["token"] == "tok-3"


def _scan(accounts: list[Any], identifier: str) -> int | None:
    """The look-up the index replaces: the first entry of a matching identifier."""
    wanted = {identifier.strip(), normalise_mobile(identifier)} - {""}
    return next((i for i, item in enumerate(accounts) if identifier_of(item) in wanted), None)


def test_the_account_index_finds_what_a_scan_of_the_list_finds() -> None:
    rng = random.Random(7)
    accounts: list[Any] = []
    for _ in range(400):
        kind = rng.randrange(5)
        n = rng.randrange(60)
        accounts.append({"email": f"a{n}@x.com"} if kind == 0 else
                        {"mobile": rng.choice([f"1380000{n:04d}", f"+86 1380000{n:04d}"])}
                        if kind == 1 else {"token": f"t{n}"} if kind == 2 else
                        {"email": f" a{n}@x.com ", "mobile": f"1390000{n:04d}"} if kind == 3
                        else rng.choice(["bare", None, {}]))
    index = AccountIndex(accounts)
    probes = [identifier_of(a) for a in accounts] + [
        f"a{n}@x.com" for n in range(70)] + [f"138-0000-{n:04d}" for n in range(70)] + [
        "", " ", "nobody"]
    for probe in probes:
        assert index.find(probe) == _scan(accounts, probe), probe


def test_the_key_index_finds_what_a_scan_of_the_keys_finds() -> None:
    keys: list[Any] = ["sk-a", {"key": "sk-b", "name": "b"}, "sk-a", {"key": ""}, 5,
                       {"key": "sk-c"}]
    index = KeyIndex(keys)
    for probe in ("sk-a", "sk-b", "sk-c", key_id("sk-b"), key_id("sk-c"), "", "sk-z"):
        found = next((k for k in keys if secret_of(k) and probe in (
            secret_of(k), key_id(secret_of(k)))), None)
        assert index.find(probe) is found, probe


def test_a_token_is_header_safe_exactly_when_no_character_is_blank_or_unprintable() -> None:
    for code in [*range(0x00, 0x2100), *range(0x2FF0, 0x3010), 0xFEFF, 0x1F600]:
        char = chr(code)
        by_character = not (char.isspace() or not char.isprintable())
        assert header_safe(f"ab{char}cd") is by_character, hex(code)


def test_the_document_copy_shares_nothing_that_can_change() -> None:
    doc: dict[str, Any] = {"a": [{"b": [1, 2.5, True, None, "s"]}], "c": {"d": {}},
                           "e": ("tuple", [1])}
    copied = copy_tree(doc)
    assert copied == doc
    copied["a"][0]["b"].append(3)
    copied["c"]["d"]["x"] = 1
    copied["e"][1].append(2)
    assert doc == {"a": [{"b": [1, 2.5, True, None, "s"]}], "c": {"d": {}}, "e": ("tuple", [1])}
