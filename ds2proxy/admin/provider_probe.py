"""The provider test button: does the provider answer with these settings?

Without a model it lists the provider's models (``GET /models``); with one it
asks for a one-token chat completion, the limit under the name real requests
send it (``providers[].max_tokens_field``, or what the provider taught: with
"auto" a refusal of one name is asked again once under the other, as a turn
does). The verdict carries the latency and the
provider's own words on failure, with the key and header values scrubbed out
of them: a provider that echoes the credential it refused must not make the
dashboard show it.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson

from ..providers.request import refused_limit_field, with_limit_field

MAX_TEST_SECONDS = 30.0
MAX_LISTED = 50
MAX_MESSAGE = 300


def request_headers(provider: dict[str, Any]) -> dict[str, str]:
    """The configured headers plus the bearer key (a configured header wins)."""
    headers = {str(k): str(v) for k, v in (provider.get("headers") or {}).items()}
    key = provider.get("api_key") or ""
    if key and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = f"Bearer {key}"
    return headers


def scrub(text: str, provider: dict[str, Any]) -> str:
    """``text`` with every secret of ``provider`` replaced by a marker."""
    secrets = [provider.get("api_key") or "", *(provider.get("headers") or {}).values()]
    for secret in sorted((str(s) for s in secrets if s and len(str(s)) >= 4), key=len,
                         reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


def _reason(status: int, body: bytes, provider: dict[str, Any]) -> str:
    """The provider's error message (OpenAI shape or plain text), scrubbed."""
    return f"HTTP {status}: {scrub(_message(body), provider)[:MAX_MESSAGE]}"


def _message(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = orjson.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        found = error.get("message") if isinstance(error, dict) else error
        text = found if isinstance(found, str) else parsed.get("message") or text
    return str(text)


def _listed(body: bytes) -> list[str]:
    try:
        data = orjson.loads(body).get("data")
    except (ValueError, AttributeError):
        return []
    return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)
            ][:MAX_LISTED] if isinstance(data, list) else []


async def test_provider(http: aiohttp.ClientSession, provider: dict[str, Any], *,
                        model: str = "", limit_field: str = "max_tokens") -> dict[str, Any]:
    """One verdict: success, latency in ms, status and what happened. A
    chat's ``limit_field`` is the name its one-token limit goes under; a
    name learnt from a refusal is in the verdict's ``limit_field``."""
    base = str(provider["base_url"]).rstrip("/")
    timeout = min(float(provider.get("timeout_seconds") or MAX_TEST_SECONDS), MAX_TEST_SECONDS)
    if model:
        method, url = "POST", f"{base}/chat/completions"
        body: Any = {"model": model, limit_field: 1, "stream": False,
                     "messages": [{"role": "user", "content": "ping"}]}
    else:
        method, url, body = "GET", f"{base}/models", None
    result: dict[str, Any] = {"provider": provider["name"], "model": model}
    started = time.monotonic()
    try:
        status, raw = await _call(http, method, url, body, provider, timeout)
        other = (refused_limit_field(body, _message(raw))
                 if model and status == 400 and _learns(provider) else None)
        if other is not None:  # asked again once under the name it takes
            result["limit_field"] = other
            status, raw = await _call(http, method, url, with_limit_field(body, other),
                                      provider, timeout)
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        return {**result, "success": False, "status_code": 0, "models": [],
                "response_time": round((time.monotonic() - started) * 1000),
                "message": f"request failed: {reason}"}
    ok = 200 <= status < 300
    listed = _listed(raw) if ok and not model else []
    message = (f"answered in model {model}" if model else f"{len(listed)} models listed") \
        if ok else _reason(status, raw, provider)
    return {**result, "success": ok, "status_code": status, "models": listed,
            "response_time": round((time.monotonic() - started) * 1000), "message": message}


def _learns(provider: dict[str, Any]) -> bool:
    """Whether the limit's name is learnt from refusals ("auto", the default)."""
    return (provider.get("max_tokens_field") or "auto") == "auto"


async def _call(http: aiohttp.ClientSession, method: str, url: str, body: Any,
                provider: dict[str, Any], timeout: float) -> tuple[int, bytes]:
    async with http.request(method, url, json=body, headers=request_headers(provider),
                            timeout=aiohttp.ClientTimeout(total=timeout),
                            allow_redirects=False) as resp:
        return resp.status, await resp.read()
