"""No credential reaches a log line: malformed and oversized requests sent on
a raw socket to the real server are refused with 400 and logged without the
request's bytes; anything credential-shaped in other records is masked."""

from __future__ import annotations

import asyncio
import logging

import pytest
from conftest import Proxy

from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, InvalidHeader, LineTooLong

from ds2proxy.bad_requests import safe_reason
from ds2proxy.log_redaction import redact

SECRET = "sk-live-9f8e7d6c5b4a3210SECRET"

MALFORMED = [
    # A control character in the Authorization header (the reported case).
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET.encode()
    + b"\x01\r\n\r\n",
    # An oversized header: the parser quotes its start.
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET.encode()
    + b"A" * 9000 + b"\r\n\r\n",
    # A broken request line, chunk size, header fold and an HTTP/2 preface also quote.
    b"GET /v1/models?key=" + SECRET.encode() + b" HTTP/9.9x\r\nHost: x\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ"
    + SECRET.encode() + b"\r\n{}\r\n0\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n " + SECRET.encode()
    + b"\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SECRET.encode(),
    # Other credential carriers: x-api-key, x-goog-api-key, ?key=.
    b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " + SECRET.encode() + b"\x7f\r\n\r\n",
    b"GET /v1beta/models?key=" + SECRET.encode() + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1beta/models HTTP/1.1\r\nHost: x\r\nx-goog-api-key: " + SECRET.encode()
    + b"\r\nBad Header\x00: y\r\n\r\n",
]


async def _send_raw(proxy: Proxy, raw: bytes) -> bytes:
    port = int(proxy.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize("raw", MALFORMED, ids=["ctl-char", "oversized", "request-line",
                                                "chunk-size", "header-fold", "http2-preface",
                                                "x-api-key", "query-key", "bad-name"])
async def test_malformed_request_is_a_400_and_logs_no_secret(proxy: Proxy, raw: bytes,
                                                             caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    answer = await _send_raw(proxy, raw)
    assert answer.split(b"\r\n", 1)[0].endswith(b"400 Bad Request")
    # aiohttp's own 400 body quotes the request; SDKs and proxies keep error bodies.
    head, _, body = answer.partition(b"\r\n\r\n")
    assert SECRET.encode() not in answer and b"malformed HTTP request" in body
    assert caplog.records, "the refusal should still be logged"
    assert any("malformed HTTP request" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage() and SECRET not in (record.exc_text or "")


async def test_server_keeps_serving_after_a_malformed_request(proxy: Proxy):
    await _send_raw(proxy, MALFORMED[0])
    answer = await _send_raw(proxy, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close"
                                    b"\r\n\r\n")
    assert b" 200 " in answer.split(b"\r\n", 1)[0]


async def test_credentials_in_other_records_and_tracebacks_are_masked(
        proxy: Proxy, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("ds2proxy.upstream")
    log.warning("calling with Authorization: Bearer %s", SECRET)
    try:
        raise ValueError(f"header value {{'x-api-key': '{SECRET}'}}")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Unhandled exception")
    assert "Authorization: [redacted]" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize("text, expected", [
    ("Authorization: Bearer abc.def", "Authorization: [redacted]"),
    ("GET /v1beta/models?key=AIza99&alt=sse", "GET /v1beta/models?key=[redacted]&alt=sse"),
    ('{"token": "t0k", "password": "pw"}', '{"token": "[redacted]", "password": "[redacted]"}'),
    ("x-goog-api-key: g-1", "x-goog-api-key: [redacted]"),
    ("model key mapping updated", "model key mapping updated"),
    ("monkey=banana", "monkey=banana"),
    ("Cookie: theme=dark; ds2proxy_session=s3cr3t\nnext line",
     "Cookie: [redacted]\nnext line"),
    ("{'set-cookie': 'sid=abc; Path=/; HttpOnly'}", "{'set-cookie': '[redacted]'}"),
    # A quoted value is masked to its closing quote: only its first word was.
    ('{"password": "correct horse battery"}', '{"password": "[redacted]"}'),
    ("{'token': 'a b\\' c'} d", "{'token': '[redacted]'} d"),
    # A secret's name as the last word of a longer one, as masked reads name it.
    ('{"new_password": "two words", "client_secret": "cs-1"}',
     '{"new_password": "[redacted]", "client_secret": "[redacted]"}'),
    ("authToken=at-1 webhook-password: wp-2", "authToken=[redacted] webhook-password: [redacted]"),
    ("max_tokens=5 prompt_tokens: 7", "max_tokens=5 prompt_tokens: 7"),
    # A URL's password: these were logged in full.
    ("redis://:pw-1@db:6379/0 socks5://u:pw-2@h:1080",
     "redis://:[redacted]@db:6379/0 socks5://u:[redacted]@h:1080"),
    ("via http://user:…@127.0.0.1:1 and http://[::1]:5001/x",
     "via http://user:…@127.0.0.1:1 and http://[::1]:5001/x"),
])
def test_redact(text: str, expected: str):
    assert redact(text) == expected


@pytest.mark.parametrize("exc, reason", [
    # The pure-Python parser quotes without a colon first.
    (BadStatusLine(f"GET /v1beta/models?key={SECRET} HTTP/1.1"), "Bad status line"),
    (BadHttpMethod(f"G(T /x?key={SECRET} HTTP/1.1"), "Bad HTTP method in status line"),
    (InvalidHeader(f"Authorization: Bearer {SECRET}".encode()), "Invalid HTTP header"),
    (LineTooLong(f"Bearer {SECRET}".encode(), 8190), "Got more than 8190 bytes when reading"),
])
def test_parser_reasons_never_carry_request_bytes(exc, reason):
    assert safe_reason(exc) == reason


async def test_an_admin_route_that_fails_logs_its_template_not_the_secret_in_its_path(
        proxy: Proxy, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """DELETE /admin/keys/{key} names the key itself in its path, and an
    unexpected failure was logged as 'admin route /admin/keys/<the key> failed'."""
    import aiohttp
    from ds2proxy.admin import ADMIN

    ops = proxy.app[ADMIN].ops

    async def fails(key: str) -> int:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(ops, "remove_key", fails)
    caplog.set_level(logging.ERROR, logger="ds2proxy.admin")
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{proxy.url}/admin/keys/{SECRET}", headers={
                "Authorization": f"Bearer {proxy.admin_key}"}) as resp:
            assert resp.status == 500 and SECRET not in await resp.text()
    assert "admin route DELETE /admin/keys/{key} failed" in caplog.text
    assert SECRET not in caplog.text
