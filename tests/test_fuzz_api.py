"""Property-based fuzz of every API route against a real server on a real
port in front of the fake upstream.

Each route gets structured-but-wrong bodies (its own fields with wrong types
and values, huge numbers, NUL, non-ASCII, unhashables, deep nesting, unknown
blocks) and random JSON. Whatever arrives: no 5xx, no traceback in the
response or the log, errors in the family's own shape, a 400 never costs an
upstream session or PoW, and the pool's in-flight count returns to 0 (no
leaked lease). The budget is fixed (``derandomize``), so the run is the same
every time: per route ``STRUCTURED + RANDOM`` examples (``SEGMENT`` for
routes whose input is a path segment, one request for a plain list) —
1,505 requests over 29 routes, about 10 s on an idle machine.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import time
from urllib.parse import urlsplit

import pytest
from fuzz_routes import ROUTES, Route, random_body, segment_values, structured
from hypothesis import HealthCheck, given, settings

# FUZZ_SCALE=10 multiplies the budget for a longer campaign.
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
STRUCTURED = 60 * SCALE
RANDOM = 15 * SCALE
SEGMENT = 25 * SCALE
BUDGET = settings(deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
SPENT = ("/api/v0/chat_session/create", "/api/v0/chat/create_pow_challenge")
# Routes outside the fuzz on purpose: probes, the redirect to the dashboard and
# the admin-guarded metrics.
NOT_API = {"/healthz", "/readyz", "/", "/metrics"}


def check_shape(family: str, status: int, body: dict) -> None:
    """The error body in the family's own shape."""
    if family == "google":
        error = body["error"]
        assert error["code"] == status and isinstance(error["message"], str)
        assert isinstance(error["status"], str)
    elif family == "ollama":
        assert isinstance(body["error"], str) and body["error"]
    elif family == "anthropic":
        assert body["type"] == "error" and isinstance(body["error"]["message"], str)
        assert isinstance(body["error"]["type"], str)
    else:
        error = body["error"]
        assert isinstance(error["message"], str) and isinstance(error["type"], str)
        assert {"code", "param"} <= error.keys()


def check_upstream_sampling(body: dict) -> None:
    """Only validated values travel upstream: finite numbers, a list of strings."""
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        if key in body:
            value = body[key]
            assert isinstance(value, float) and -2 <= value <= 2, (key, value)
    if "max_tokens" in body:
        assert type(body["max_tokens"]) is int and body["max_tokens"] >= 1
    if "stop" in body:
        assert isinstance(body["stop"], list) and all(isinstance(s, str) for s in body["stop"])


class Client:
    """Blocking requests from hypothesis' thread to the server's loop."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.netloc = urlsplit(proxy.url).netloc

    def headers(self, route: Route) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if route.extra_headers:
            headers.update({k: v.format(key=self.proxy.key)
                            for k, v in route.extra_headers.items()})
        else:
            headers["Authorization"] = f"Bearer {self.proxy.key}"
        return headers

    def send(self, route: Route, path: str, body: bytes | None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.netloc, timeout=30)
        try:
            target = f"{path}?{route.query}" if route.query else path
            conn.request(route.method, target, body=body, headers=self.headers(route))
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def spent(self) -> int:
        return sum(1 for call in self.proxy.fake.calls if call.path in SPENT)

    def settle(self) -> None:
        """Wait until every lease is back (a stream's ends just after its last byte)."""
        deadline = time.monotonic() + 5
        while self.proxy.core.pool.inflight and time.monotonic() < deadline:
            time.sleep(0.002)
        assert self.proxy.core.pool.inflight == 0, "a lease was not released"

    def completions(self) -> list:
        return self.proxy.fake.calls_to("chat/completion")

    def check(self, route: Route, path: str, body: bytes | None) -> None:
        before, sent = self.spent(), len(self.completions())
        status, raw = self.send(route, path, body)
        assert status < 500, (status, raw[:300])
        assert b"Traceback" not in raw
        self.settle()
        for call in self.completions()[sent:]:
            check_upstream_sampling(call.body)
        if status < 400:
            return
        check_shape(route.family, status, json.loads(raw))
        if status == 400:
            assert self.spent() == before, "a 400 came after upstream work"


def run_route(client: Client, route: Route) -> int:
    """Run the route's budget; returns how many examples were sent."""
    sent = 0

    def one(path: str, body: bytes | None) -> None:
        nonlocal sent
        sent += 1
        client.check(route, path, body)

    if route.segment is not None:
        fuzz = settings(BUDGET, max_examples=SEGMENT)(
            given(segment_values())(lambda seg: one(route.path.format(seg), _json_body(route))))
        fuzz()
        return sent
    if route.body is None:
        one(route.path, None)
        return sent
    settings(BUDGET, max_examples=STRUCTURED)(given(structured(route))(
        lambda body: one(route.path, body)))()
    settings(BUDGET, max_examples=RANDOM)(given(random_body(route))(
        lambda body: one(route.path, body)))()
    return sent


def _json_body(route: Route) -> bytes | None:
    return json.dumps(route.body).encode() if route.body is not None else None


def budget(route: Route) -> int:
    if route.segment is not None:
        return SEGMENT
    return STRUCTURED + RANDOM if route.body is not None else 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
async def test_route_survives_fuzzing(proxy, route, caplog):
    caplog.set_level(logging.WARNING)
    sent = await asyncio.to_thread(run_route, Client(proxy), route)
    assert sent == budget(route)
    assert proxy.core.pool.inflight == 0
    bad = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
           or r.exc_info or "Traceback" in r.getMessage()]
    assert bad == []


async def test_the_fuzz_covers_every_api_route(proxy):
    """A route added later must be added to the fuzz table too."""
    served = {(r.method, r.resource.canonical) for r in proxy.app.router.routes()
              if r.resource is not None and r.method in ("GET", "POST")
              and not r.resource.canonical.startswith(("/admin", "/static"))
              and r.resource.canonical not in NOT_API}
    fuzzed = {(r.method, r.path.replace("{}", "{" + r.segment + "}") if r.segment else
               r.path.split(":")[0].replace("gemini-2.5-pro", "{model_action}")
               .replace("gemini-2.5-flash", "{model_action}"))
              for r in ROUTES}
    assert served - fuzzed == set()
