"""The DeepSeek JSON envelope ``{"code", "msg", "data": {"biz_code",
"biz_msg", "biz_data"}}``: decoding it and reading what an error means
(a refused token, an outdated client, a refused PoW)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import UpstreamError

# A missing or refused PoW answer (spec §12): worth one fresh challenge.
POW_REFUSED_CODES = frozenset({40300, 40301})
CLIENT_TOO_OLD = 40005
_INVALID_TOKEN_CODES = {40001, 40002, 40003}
_REFUSING_STATUSES = (401, 403)
_INVALID_TOKEN_WORDS = ("token", "unauthorized", "expired", "not login", "login required",
                        "invalid jwt")
_AUTH_FLAVOURED_WORDS = ("auth", "authorization", "credential", "expired", "jwt", "login",
                         "token", "unauthorized", "session expired", "登录", "未登录", "认证",
                         "凭证", "会话过期", "令牌")


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded ``{"code", "msg", "data": {"biz_code", "biz_msg", "biz_data"}}`` reply."""

    http_status: int
    code: int
    msg: str
    biz_code: int
    biz_msg: str
    biz_data: Any

    @property
    def ok(self) -> bool:
        return self.http_status == 200 and self.code == 0 and self.biz_code == 0

    @property
    def message(self) -> str:
        """Error text to show: biz_msg, else biz_data.msg, else msg (spec §1.2)."""
        if self.biz_msg:
            return self.biz_msg
        if isinstance(self.biz_data, dict) and isinstance(self.biz_data.get("msg"), str):
            if self.biz_data["msg"]:
                return self.biz_data["msg"]
        return self.msg or f"HTTP {self.http_status}"

    @property
    def token_invalid(self) -> bool:
        """Spec §3: the credential itself was refused."""
        if self.http_status in (401, 403):
            return True
        if self.code in _INVALID_TOKEN_CODES or self.biz_code in _INVALID_TOKEN_CODES:
            return True
        text = f"{self.msg} {self.biz_msg}".lower()
        return any(w in text for w in _INVALID_TOKEN_WORDS)

    @property
    def auth_flavoured(self) -> bool:
        """Spec §3: a business error that smells of authentication."""
        if self.http_status != 200 or self.code != 0 or self.biz_code == 0:
            return False
        text = f"{self.msg} {self.biz_msg}".lower()
        return any(w in text for w in _AUTH_FLAVOURED_WORDS)

    @property
    def needs_refresh(self) -> bool:
        return self.token_invalid or self.auth_flavoured


def parse_envelope(status: int, body: bytes) -> Envelope:
    """Decode an envelope; HTML, WAF pages and other non-JSON are upstream
    errors, except that a 401 or 403 refuses the token whatever its body
    says (spec §3), so it is read as a bare refusal the caller can act on."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        if status in _REFUSING_STATUSES:
            return Envelope(status, status, f"HTTP {status}", 0, "", None)
        kind = "a non-JSON body" if doc is None else "unexpected JSON"
        raise UpstreamError(f"upstream answered HTTP {status} with {kind}")
    if "detail" in doc and "code" not in doc:
        return Envelope(status, status, _detail_text(doc["detail"]), 0, "", None)
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    return Envelope(
        http_status=status,
        code=_as_int(doc.get("code")),
        msg=str(doc.get("msg") or ""),
        biz_code=_as_int(data.get("biz_code")),
        biz_msg=str(data.get("biz_msg") or ""),
        biz_data=data.get("biz_data"),
    )


def _as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return -1


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):
        locs = [str(d.get("loc")) for d in detail if isinstance(d, dict)]
        return "validation error: " + ", ".join(locs)
    return str(detail)


class UpstreamCallError(UpstreamError):
    """An endpoint answered with an error envelope (kept for retry decisions)."""

    def __init__(self, what: str, envelope: Envelope) -> None:
        super().__init__(f"{what} failed: {envelope.message}")
        self.envelope = envelope
