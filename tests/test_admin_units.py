"""Admin building blocks on their own: capture buffer, login throttle,
password hashing, masking, settings table and config edits."""

from __future__ import annotations

import asyncio
import threading

from pathlib import Path

import pytest

from clock_util import Clock
from ds2proxy.admin import edits, masking, settings
from ds2proxy.admin.masking import key_id, mask_tree, preview
from ds2proxy.admin.passwords import hash_password, verify_password
from ds2proxy.admin.throttle import LoginThrottle, address_key
from ds2proxy.captures import CaptureBuffer
from ds2proxy.config import parse_config
from ds2proxy.errors import InvalidRequest, NotFound, RateLimited

# -- captures -------------------------------------------------------------------------


def test_capture_buffer_off_records_nothing():
    buffer = CaptureBuffer(enabled=False)
    assert buffer.start("POST", "http://up/x", {}, b"{}") is None
    assert buffer.items() == []


def test_capture_keeps_newest_first_within_limit():
    buffer = CaptureBuffer(enabled=True, limit=3)
    for i in range(5):
        capture = buffer.start("GET", f"http://up/{i}", {}, None)
        capture.set_status(200)
        capture.finish()
    urls = [item["url"] for item in buffer.items()]
    assert urls == ["http://up/4", "http://up/3", "http://up/2"]
    buffer.configure(enabled=True, limit=2, max_body_bytes=100)
    assert [item["url"] for item in buffer.items()] == ["http://up/4", "http://up/3"]
    buffer.clear()
    assert buffer.items() == []


def test_capture_truncates_the_stream_and_counts_every_byte():
    buffer = CaptureBuffer(enabled=True, max_body_bytes=10)
    capture = buffer.start("POST", "http://up/chat", {}, b"")
    capture.append(b"0123456")
    capture.append(b"789abcdef")
    capture.finish()
    item = buffer.items()[0]
    assert item["response_body"] == "0123456789"
    assert item["response_bytes"] == 16
    assert item["truncated"] is True
    assert item["done"] is True and item["duration_ms"] >= 0


def test_capture_redacts_credentials_everywhere():
    secrets = ["user-token-123456", "hunter2-password", "pow-answer-xyz", "api-key-zz9"]
    buffer = CaptureBuffer(enabled=True)
    capture = buffer.start(
        "POST", "http://up/api?key=api-key-zz9",
        {"Authorization": "Bearer user-token-123456", "x-ds-pow-response": "pow-answer-xyz",
         "User-Agent": "DeepSeek"},
        b'{"email": "a@b.c", "password": "hunter2-password"}')
    capture.set_status(200)
    capture.append(b'{"data": {"biz_data": {"user": {"token": "user-token-123456"}}}}')
    capture.finish("failed with Bearer user-token-123456")
    item = buffer.items()[0]
    text = repr(item)
    for secret in secrets:
        assert secret not in text
    assert item["request_headers"]["User-Agent"] == "DeepSeek"
    assert '"email": "a@b.c"' in item["request_body"]


def test_capture_redacts_a_token_cut_off_by_truncation():
    buffer = CaptureBuffer(enabled=True, max_body_bytes=40)
    capture = buffer.start("POST", "http://up/login", {}, None)
    capture.append(b'{"user": {"token": "abcdefghijklmnopqrstuvwxyz0123456789"}}')
    assert "abcdefghij" not in buffer.items()[0]["response_body"]


# -- throttle -------------------------------------------------------------------------------


class RecordingSleep:
    """Records the delays asked for; ``hold`` keeps sleepers waiting until released."""

    def __init__(self, *, hold: bool = False) -> None:
        self.delays: list[float] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self.release.wait()


async def test_throttle_delays_wrong_answers_exponentially_up_to_a_cap():
    sleep = RecordingSleep()
    throttle = LoginThrottle(free_attempts=3, base_delay=2, max_delay=10, sleep=sleep,
                             clock=Clock())
    for _ in range(8):
        throttle.admit("1.2.3.4")  # never refused while nothing is held
        await throttle.failed("1.2.3.4")
    assert sleep.delays == [2, 4, 8, 10, 10]
    assert throttle.failures("1.2.3.4") == 8 and throttle.pending("1.2.3.4") == 0
    await throttle.failed("5.6.7.8")  # other addresses start free
    assert len(sleep.delays) == 5


async def test_throttle_forgets_failures_after_a_quiet_spell():
    clock, sleep = Clock(), RecordingSleep()
    throttle = LoginThrottle(free_attempts=1, base_delay=1, forget_after=600, clock=clock,
                             sleep=sleep)
    for _ in range(3):
        await throttle.failed("a")
    assert sleep.delays == [1, 2]
    clock.now += 601
    await throttle.failed("a")
    assert sleep.delays == [1, 2] and throttle.failures("a") == 1


async def test_throttle_refuses_unchecked_only_while_too_many_failures_are_held():
    sleep = RecordingSleep(hold=True)
    throttle = LoginThrottle(free_attempts=0, base_delay=5, max_pending=2, sleep=sleep,
                             clock=Clock())
    held = [asyncio.create_task(throttle.failed("a")) for _ in range(2)]
    while throttle.pending("a") < 2:
        await asyncio.sleep(0)
    with pytest.raises(RateLimited) as info:
        throttle.admit("a")
    assert info.value.retry_after >= 5
    throttle.admit("b")
    held[0].cancel()  # a client that gives up frees its place
    await asyncio.gather(held[0], return_exceptions=True)
    throttle.admit("a")
    sleep.release.set()
    await held[1]
    assert throttle.pending("a") == 0


async def test_throttle_memory_is_bounded_and_trimmed_a_tenth_at_a_time():
    """Trimmed to the bound itself, every new address past it paid a sort of
    every record (3.3 ms at 10,000, on the event loop): a stranger sending
    each guess from a fresh address bought milliseconds of loop per request."""
    clock = Clock()
    throttle = LoginThrottle(max_addresses=100, clock=clock, sleep=RecordingSleep())
    for i in range(101):
        clock.now += 1
        await throttle.failed(f"10.0.0.{i}")
    assert len(throttle._records) == 90  # the ten idle longest went together
    assert throttle.failures("10.0.0.10") == 0 and throttle.failures("10.0.0.11") == 1
    for i in range(101, 111):
        await throttle.failed(f"10.0.0.{i}")
    assert len(throttle._records) == 100  # no trim until the bound is passed again
    assert throttle.failures("10.0.0.110") == 1


async def test_an_address_that_only_gets_in_keeps_no_record():
    """Every check made a record, kept until the bound pushed it out: admin
    scripts calling with the key from many addresses filled it as guesses do."""
    throttle = LoginThrottle(clock=Clock(), sleep=RecordingSleep())
    for i in range(20):
        with throttle.checking(f"10.0.1.{i}"):
            pass  # a right key
    assert throttle._records == {}
    with throttle.checking("10.0.2.1"):
        pass  # a wrong one: counted once the check is over
    await throttle.failed("10.0.2.1")
    with throttle.checking("10.0.2.1"):
        pass
    assert throttle.failures("10.0.2.1") == 1


# -- passwords --------------------------------------------------------------------------------


async def test_password_hash_is_salted_and_verifies_off_the_loop():
    loop_thread = threading.get_ident()
    first, second = await asyncio.gather(hash_password("correct horse"),
                                         hash_password("correct horse"))
    assert first != second and "correct horse" not in first
    assert await verify_password("correct horse", first)
    assert not await verify_password("wrong horse", first)
    assert not await verify_password("correct horse", "garbage")
    assert threading.get_ident() == loop_thread


# -- masking ----------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["sk-abcdefghijklmnop", "mediumlen", "short"])
def test_preview_never_contains_the_secret(secret):
    shown = preview(secret)
    assert secret not in shown and "…" in shown


def test_preview_shape_for_long_keys():
    assert preview("sk-abcdefghij3f") == "sk-a…3f"


def test_mask_tree_previews_secret_members_at_any_depth():
    doc = {"plugins": {"x": {"api_key": "plugin-secret-value", "url": "http://h"}},
           "list": [{"token": "nested-token-value"}]}
    masked = mask_tree(doc)
    assert "plugin-secret-value" not in repr(masked)
    assert "nested-token-value" not in repr(masked)
    assert masked["plugins"]["x"]["url"] == "http://h"


# -- settings table ----------------------------------------------------------------------------


def test_flatten_patch_accepts_the_nested_shape_and_ignores_read_only_facts():
    changes = settings.flatten_patch({
        "runtime": {"account_max_inflight": 3},
        "model_aliases": {"x": "deepseek-chat"},
        "admin": {"jwt_expire_hours": 2, "password_set": True},
        "env_backed": False,
    })
    assert changes == {"runtime.account_max_inflight": 3, "model_aliases": {"x": "deepseek-chat"},
                       "admin.jwt_expire_hours": 2}


@pytest.mark.parametrize("body,field", [
    ({"runtime": {"nope": 1}}, "runtime.nope"),
    ({"bogus": {}}, "bogus"),
    ({"runtime": 3}, "runtime"),
])
def test_flatten_patch_names_the_unknown_field(body, field):
    with pytest.raises(InvalidRequest) as info:
        settings.flatten_patch(body)
    assert info.value.param == field


def test_apply_changes_sets_and_resets():
    data = {"runtime": {"account_max_queue": 5, "account_max_inflight": 2}}
    settings.apply_changes(data, {"runtime.account_max_queue": None,
                                  "dev_captures.enabled": True})
    assert data == {"runtime": {"account_max_inflight": 2}, "dev_captures": {"enabled": True}}


def test_check_maps_refuses_non_native_targets():
    with pytest.raises(InvalidRequest) as info:
        settings.check_maps({"model_aliases": {"mine": "gpt-9"}}, lambda m: m == "deepseek-chat")
    assert info.value.param == "model_aliases.mine"
    settings.check_maps({"model_aliases": {"mine": "deepseek-chat"}},
                        lambda m: m == "deepseek-chat")


def test_parse_form_reads_every_kind_and_reports_bad_numbers():
    form = {path: "" for path in settings.SETTINGS}
    form.update({"runtime.account_max_inflight": "4", "runtime.global_max_inflight": "x",
                 "runtime.queue_timeout_seconds": "2.5", "dev_captures.enabled": "on",
                 "model_aliases": "a = deepseek-chat\n\nb=deepseek-reasoner",
                 "claude_mapping": "", "search.citation_style": "strip"})
    changes, errors = settings.parse_form(form)
    assert changes["runtime.account_max_inflight"] == 4
    assert changes["runtime.queue_timeout_seconds"] == 2.5
    assert changes["runtime.account_max_queue"] is None
    assert changes["dev_captures.enabled"] is True
    assert changes["auth.allow_passthrough"] is False
    assert changes["model_aliases"] == {"a": "deepseek-chat", "b": "deepseek-reasoner"}
    assert errors["runtime.global_max_inflight"] == "must be a whole number"
    assert "responses.store_ttl_seconds" in errors  # required, left empty


def test_settings_view_round_trips_through_the_patch():
    cfg = parse_config({"runtime": {"account_max_inflight": 5}})
    view = settings.nested_view(cfg, password_set=False, default_key_in_use=True,
                                config_source="file")
    changes = settings.flatten_patch(view)
    data: dict = {}
    settings.apply_changes(data, changes)
    assert parse_config(data).runtime.account_max_inflight == 5


# -- edits ---------------------------------------------------------------------------------------


def test_keys_are_removed_by_value_or_id():
    data = {"keys": ["sk-one-1234567890", "sk-two-1234567890"]}
    assert edits.remove_key(data, key_id("sk-two-1234567890")) == 1
    assert edits.remove_key(data, "sk-one-1234567890") == 0
    with pytest.raises(NotFound):
        edits.remove_key(data, "sk-one-1234567890")


def test_clean_account_requires_a_way_to_log_in():
    assert edits.clean_account({"email": " a@b.c ", "password": "p"}) == {"email": "a@b.c",
                                                                         "password": "p"}
    assert edits.clean_account({"token": "t"}) == {"token": "t"}
    for bad in ({"email": "a@b.c"}, {}, {"email": "nope", "password": "p"}, {"token": 3}):
        with pytest.raises(InvalidRequest):
            edits.clean_account(bad)


def test_accounts_match_by_normalised_mobile():
    data = {"accounts": [{"mobile": "13800000000", "password": "p"}]}
    with pytest.raises(edits.Conflict):
        edits.add_account(data, {"mobile": "+86 138 0000 0000", "password": "q"})
    assert edits.remove_account(data, "+8613800000000") == 0


def test_resolve_accounts_keeps_stored_secrets_for_masked_entries():
    current = [{"email": "a@b.c", "password": "stored-pw", "token": "stored-token"},
               {"token": "only-token"}]
    token_id = parse_config({"accounts": [{"token": "only-token"}]}).accounts[0].identifier
    result = edits.resolve_accounts(current, [{"identifier": "a@b.c", "has_password": True},
                                              {"identifier": token_id}])
    assert result == current


def test_import_merge_and_replace_keep_admin_credentials():
    current = {"keys": ["k1"], "accounts": [{"email": "a@b.c", "password": "old"}],
               "runtime": {"account_max_inflight": 2, "account_max_queue": 4},
               "admin": {"password_hash": "H", "jwt_secret": "S", "jwt_expire_hours": 1}}
    incoming = {"keys": ["k2"], "accounts": [{"email": "a@b.c", "password": "new"},
                                             {"token": "t"}],
                "runtime": {"account_max_inflight": 3},
                "admin": {"password_hash": "EVIL", "jwt_expire_hours": 5}}
    merged = edits.import_document(current, incoming, "merge")
    assert merged["keys"] == ["k1", "k2"]
    assert merged["accounts"] == [{"email": "a@b.c", "password": "new"}, {"token": "t"}]
    assert merged["runtime"] == {"account_max_inflight": 3, "account_max_queue": 4}
    assert merged["admin"] == {"password_hash": "H", "jwt_secret": "S", "jwt_expire_hours": 5}
    replaced = edits.import_document(current, incoming, "replace")
    assert replaced["keys"] == ["k2"] and "account_max_queue" not in replaced["runtime"]
    assert replaced["admin"]["password_hash"] == "H"


def test_unwrap_import_accepts_bare_or_wrapped():
    assert edits.unwrap_import({"keys": []}, None) == ({"keys": []}, "merge")
    assert edits.unwrap_import({"config": {"keys": ["a"]}, "mode": "replace"}, None) == (
        {"keys": ["a"]}, "replace")
    with pytest.raises(InvalidRequest):
        edits.unwrap_import({"keys": []}, "overwrite")


# -- assets ------------------------------------------------------------------------------------


def test_dashboard_files_come_from_their_resource_packages():
    from importlib.resources import files

    from ds2proxy.admin import assets

    assert assets.templates_dir() == Path(str(files("ds2proxy_templates")))
    assert (assets.static_dir() / "admin.css").is_file()
    with pytest.raises(FileNotFoundError, match="not installed"):
        assets._locate("ds2proxy_no_such_files", "base.html")
    with pytest.raises(FileNotFoundError, match="no base.html in ds2proxy_static"):
        assets._locate("ds2proxy_static", "base.html")


@pytest.mark.parametrize("name, secret", [
    ("password", True), ("client_secret", True), ("clientSecret", True), ("auth-token", True),
    ("webhook_password", True), ("private_key", True), ("X-Api-Key", True), ("passphrase", True),
    ("key_prefix", False), ("max_tokens", False), ("tokens_per_day", False), ("api_keys", True),
    ("token_refresh_interval_hours", False), ("endpoint", False), ("monkey", False),
])
def test_secret_names_include_the_words_plugins_use(name: str, secret: bool) -> None:
    assert masking.is_secret_name(name) is secret


@pytest.mark.parametrize("remote, key", [
    ("203.0.113.9", "203.0.113.9"), ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("fe80::1%eth0", "fe80::/64"), (None, "unknown"), ("not-an-address", "not-an-address"),
])
def test_login_failures_count_per_ipv4_address_or_ipv6_slash_64(remote, key) -> None:
    assert address_key(remote) == key


def test_a_secret_named_list_of_objects_keeps_its_nested_secrets() -> None:
    stored = {"credentials": [{"user": "ops", "password": "nested-pass-123456"}]}
    shown = masking.mask_tree(stored)
    # Under a secret's name every part is masked, whatever its own name.
    assert shown == {"credentials": [{"user": "…", "password": "nest…56"}]}
    assert masking.restore_tree(stored, shown) == stored


def test_a_settings_problem_quoting_a_nested_secret_is_redacted() -> None:
    from ds2proxy.secret_names import without_secrets

    section = {"secrets": {"github": "ghp-nested-0a1b2c"}, "auth": [{"value": "v-nested-9z"}],
               "credentials": [{"pass": "pass-nested-77"}], "endpoint": "http://x"}
    text = "bad: ghp-nested-0a1b2c, pass-nested-77 at http://x, v-nested-9z"
    assert without_secrets(text, section) == "bad: [redacted], [redacted] at http://x, v-nested-9z"
