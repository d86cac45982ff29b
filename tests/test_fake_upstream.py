"""The fake DeepSeek upstream's accounts, tokens, PoW, sessions and files."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ds2proxy.testing import FakeAccount, FakeDeepSeek, Scripted
from ds2proxy.testing.fake_pow import PowIssuer
from ds2proxy.testing.raw_client import RawClient, encode_pow, solve
from ds2proxy.testing.reconstruct import reconstruct
from ds2proxy.upstream.events import Ready

MOBILE, MOBILE_PASSWORD = "13800138000", "m0bile"
UPLOAD = "/api/v0/file/upload_file"


@pytest.fixture
def fake(fake_upstream: FakeDeepSeek) -> FakeDeepSeek:
    fake_upstream.add_account(FakeAccount(MOBILE_PASSWORD, mobile=MOBILE))
    return fake_upstream


@pytest.fixture
def alice(fake: FakeDeepSeek) -> FakeAccount:
    return next(a for a in fake.accounts.values() if a.email)


@pytest.fixture
async def client(fake: FakeDeepSeek) -> AsyncIterator[RawClient]:
    async with RawClient.open(fake.base_url or "") as raw:
        yield raw


@pytest.fixture
async def token(client: RawClient, alice: FakeAccount) -> str:
    return await client.login_as(alice)


def biz(reply_json: dict) -> dict:
    return reply_json["data"]["biz_data"]


async def test_login_by_email_and_by_mobile(client: RawClient, fake: FakeDeepSeek,
                                            alice: FakeAccount) -> None:
    by_mail = await client.login(alice.password, email=f" {alice.email.upper()} ")
    by_phone = await client.login(MOBILE_PASSWORD, mobile="+86 138-0013-8000", area_code=None)
    assert by_mail and by_phone and by_mail != by_phone
    assert [c.account for c in fake.calls_to("users/login")] == [alice.email, MOBILE]
    reply = await client.call("POST", "/api/v0/chat_session/create", {}, token=by_phone)
    assert reply.json()["code"] == 0
    assert fake.calls[-1].account == MOBILE


async def test_wrong_password_is_biz_code_2(client: RawClient, alice: FakeAccount) -> None:
    reply = await client.call("POST", "/api/v0/users/login",
                              {"email": alice.email, "password": "nope", "device_id": "x"})
    assert reply.status == 200
    data = reply.json()["data"]
    assert (data["biz_code"], data["biz_msg"]) == (2, "PASSWORD_OR_USER_NAME_IS_WRONG")


@pytest.mark.parametrize("field", ["password", "email", "device_id"])
async def test_missing_login_field_is_422(client: RawClient, alice: FakeAccount,
                                          field: str) -> None:
    body = {"email": alice.email, "password": alice.password, "device_id": "x"}
    del body[field]
    reply = await client.call("POST", "/api/v0/users/login", body)
    assert reply.status == 422
    assert reply.json()["detail"][0]["loc"] == f"body.{field}"


async def test_revoked_and_unknown_tokens_get_code_40003(client: RawClient, fake: FakeDeepSeek,
                                                         alice: FakeAccount, token: str) -> None:
    create = ("POST", "/api/v0/chat_session/create", {"agent": "chat"})
    assert (await client.call(*create, token=token)).json()["code"] == 0
    fake.revoke_tokens()
    for used in (token, "made-up", None):
        reply = await client.call(*create, token=used)
        assert reply.status == 200
        assert reply.json() == {"code": 40003, "msg": "Authorization Failed (invalid token)",
                                "data": None}
    fresh = await client.login_as(alice)
    assert (await client.call(*create, token=fresh)).json()["code"] == 0


async def test_old_client_version_is_refused_when_configured(alice: FakeAccount) -> None:
    async with FakeDeepSeek([alice], min_client_version="2.0.4") as strict, \
            RawClient.open(strict.base_url or "") as client:
        old = await client.call("POST", "/api/v0/users/login",
                                {"email": alice.email, "password": alice.password,
                                 "device_id": "x"}, headers={"x-client-version": "2.0.1"})
        assert old.json() == {"code": 40005, "msg": "CLIENT_VERSION_TOO_LOW", "data": None}
        assert await client.login_as(alice)


async def test_session_listing_and_deletion(client: RawClient, token: str) -> None:
    first, second = await client.session(token), await client.session(token)
    other = await client.session(await client.login(MOBILE_PASSWORD, mobile=MOBILE))
    page = await client.call("GET", "/api/v0/chat_session/fetch_page?lte_cursor.pinned=false",
                             token=token)
    listed = {s["id"] for s in biz(page.json())["chat_sessions"]}
    assert listed == {first, second} and biz(page.json())["has_more"] is False

    await client.call("POST", "/api/v0/chat_session/delete", {"chat_session_id": first},
                      token=token)
    page = await client.call("GET", "/api/v0/chat_session/fetch_page", token=token)
    assert [s["id"] for s in biz(page.json())["chat_sessions"]] == [second]

    deleted = await client.call("POST", "/api/v0/chat_session/delete_all", {}, token=token)
    assert deleted.json()["data"]["biz_data"] is None
    page = await client.call("GET", "/api/v0/chat_session/fetch_page", token=token)
    assert biz(page.json())["chat_sessions"] == []
    assert other  # another account's session is untouched by delete_all


async def test_challenge_shape(client: RawClient, fake: FakeDeepSeek, token: str) -> None:
    challenge = await client.challenge(token)
    assert challenge["algorithm"] == "DeepSeekHashV1"
    assert len(challenge["challenge"]) == 64 and int(challenge["challenge"], 16) >= 0
    assert challenge["difficulty"] == fake.pow.difficulty and challenge["expire_after"] == 300000
    assert abs(challenge["expire_at"] - (time.time() * 1000 + 300000)) < 60_000
    assert challenge["target_path"] == "/api/v0/chat/completion"
    assert 0 <= solve(challenge) < fake.pow.difficulty


async def test_pow_missing_wrong_and_right(client: RawClient, fake: FakeDeepSeek,
                                           token: str) -> None:
    sid = await client.session(token)
    missing = await client.completion(token, sid, "hi", "")
    assert missing.json() == {"code": 40300, "msg": "MISSING_HEADER", "data": None}
    garbage = await client.completion(token, sid, "hi", "not base64!")
    assert garbage.json()["code"] == 40300

    challenge = await client.challenge(token)
    answer = solve(challenge)
    wrong_answer = (answer + 1) % fake.pow.difficulty
    wrong = await client.completion(token, sid, "hi", encode_pow(challenge, wrong_answer))
    assert wrong.json() == {"code": 40301, "msg": "INVALID_POW_RESPONSE", "data": None}
    forged = encode_pow({**challenge, "signature": "0" * 64}, answer)
    assert (await client.completion(token, sid, "hi", forged)).json()["code"] == 40301

    right = encode_pow(challenge, answer)
    ok = await client.completion(token, sid, "hi", right)
    assert ok.status == 200 and ok.content_type.startswith("text/event-stream")
    # The same answer is not accepted for a second completion ...
    again = await client.completion(token, sid, "hi", right)
    assert again.json()["code"] == 40301
    # ... but the continue of that message takes it (spec §11.2).
    cont = await client.continue_(token, sid, 2, right)
    assert cont.json()["data"]["biz_code"] != 0 and cont.json()["code"] == 0


async def test_pow_bound_to_its_target_path(client: RawClient, token: str) -> None:
    sid = await client.session(token)
    upload_header = await client.pow_header(token, UPLOAD)
    reply = await client.completion(token, sid, "hi", upload_header)
    assert reply.json()["code"] == 40301


def test_expired_answer_is_refused_except_on_continue() -> None:
    now = [1_700_000_000.0]
    issuer = PowIssuer(50, clock=lambda: now[0])
    challenge = issuer.issue("/api/v0/chat/completion")
    header = encode_pow(challenge, solve(challenge))
    now[0] += 301
    assert issuer.check(header, "/api/v0/chat/completion") == (40301, "INVALID_POW_RESPONSE")
    assert issuer.check(header, "/api/v0/chat/completion", consume=False,
                        check_expiry=False) is None


async def test_message_ids_follow_parent(client: RawClient, fake: FakeDeepSeek,
                                         token: str) -> None:
    sid = await client.session(token)
    first = await client.completion(token, sid, "one", await client.pow_header(token))
    second = await client.completion(token, sid, "two", await client.pow_header(token), parent=2)
    readies = [next(e for e in reconstruct([r.body]).events if isinstance(e, Ready))
               for r in (first, second)]
    assert [(r.request_message_id, r.response_message_id) for r in readies] == [(1, 2), (3, 4)]
    sent = [c.body for c in fake.calls_to("chat/completion")]
    assert [(b["prompt"], b["parent_message_id"]) for b in sent] == [("one", None), ("two", 2)]
    # The title event comes with the session's first turn only.
    assert b"event: title" in first.body and b"event: title" not in second.body


async def test_unknown_session_is_a_business_error(client: RawClient, token: str) -> None:
    reply = await client.completion(token, "no-such-session", "hi",
                                    await client.pow_header(token))
    assert reply.status == 200 and reply.json()["data"]["biz_code"] != 0


async def test_upload_then_pending_then_success(fake: FakeDeepSeek, client: RawClient,
                                                token: str) -> None:
    fake.file_pending_polls = 1
    form = aiohttp.FormData()
    form.add_field("file", b"history text", filename="HISTORY.txt", content_type="text/plain")
    header = await client.pow_header(token, UPLOAD)
    reply = await client.call("POST", UPLOAD, data=form, token=token,
                              headers={"x-ds-pow-response": header, "x-file-size": "12"})
    uploaded = biz(reply.json())
    assert uploaded["status"] == "PENDING" and uploaded["file_name"] == "HISTORY.txt"
    assert uploaded["file_size"] == 12
    assert fake.calls_to("file/upload_file")[0].body == {
        "file_name": "HISTORY.txt", "size": 12, "content_type": "text/plain"}

    statuses = []
    for _ in range(2):
        polled = await client.call("GET", f"/api/v0/file/fetch_files?file_ids={uploaded['id']}",
                                   token=token)
        statuses += [f["status"] for f in biz(polled.json())["files"]]
    assert statuses == ["PENDING", "SUCCESS"]


async def test_upload_needs_its_own_pow(client: RawClient, token: str) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"x", filename="a.txt")
    header = await client.pow_header(token)  # a completion challenge
    reply = await client.call("POST", UPLOAD, data=form, token=token,
                              headers={"x-ds-pow-response": header})
    assert reply.json()["code"] == 40301


async def test_calls_are_recorded_with_headers_and_account(fake: FakeDeepSeek, alice: FakeAccount,
                                                           client: RawClient, token: str) -> None:
    fake.enqueue(Scripted(answer="ok"))
    seen, _ = await client.turn(token, "<｜User｜>ping<｜Assistant｜>")
    assert seen.answer == "ok"
    call = fake.calls_to("chat/completion")[0]
    assert call.account == alice.email and call.method == "POST"
    assert call.headers["x-client-version"] == "2.0.4"
    assert call.headers["authorization"] == f"Bearer {token}"
    assert call.body["prompt"] == "<｜User｜>ping<｜Assistant｜>"


async def test_runs_standalone(alice: FakeAccount) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ds2proxy.testing", "--port", "0",
        "--account", f"{alice.email}:{alice.password}", stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        url = banner.split(" on ", 1)[1].split()[0]
        async with RawClient.open(url) as client:
            assert await client.login_as(alice)
    finally:
        proc.terminate()
        await proc.wait()
