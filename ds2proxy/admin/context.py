"""Everything an admin handler needs, built once by :func:`ds2proxy.admin.setup`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..body import ADMIN_BODY_BYTES, PARSE_OFF_LOOP_BYTES, read_json_object
from ..captures import CaptureBuffer
from ..errors import InvalidRequest, ProxyError
from .credentials import AdminCredentials
from .gate import AdminGate
from .operations import AdminOps
from .web_session import WebSessions

if TYPE_CHECKING:
    from ..core import Core


@dataclass(frozen=True, slots=True)
class AdminContext:
    core: Core
    ops: AdminOps
    creds: AdminCredentials
    gate: AdminGate
    sessions: WebSessions
    captures: CaptureBuffer

    async def body(self, request: web.Request, *, optional: bool = False,
                   limit: int = ADMIN_BODY_BYTES) -> dict[str, Any]:
        """The JSON object sent; ``{}`` for an empty optional body. Nesting
        is bounded: no config needs more, and deeper values would only
        exhaust the recursion of copying, validating and saving them. A
        large body is parsed and walked in a worker thread."""
        if optional and not request.can_read_body:
            return {}
        check_json_type(request)
        return await read_json_object(request, limit, check=check_depth,
                                      off_loop_bytes=PARSE_OFF_LOOP_BYTES)


MAX_DEPTH = 32
# A login (JSON or the dashboard's form) carries a key, a form token and a
# path: anyone may send one, so its body is read up to this much only.
LOGIN_BODY_BYTES = 16 << 10


UNLABELLED = frozenset({"", "application/octet-stream"})


class UnsupportedMediaType(ProxyError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


def check_json_type(request: web.Request) -> None:
    """A 415 for a body labelled as something other than JSON. A form or
    text/plain body is what another site's page can send without asking (no
    CORS preflight), so the admin API never takes one; no label, or the
    generic ``application/octet-stream``, is read as JSON."""
    label = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if label not in UNLABELLED and label != "application/json" and not label.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as JSON (Content-Type: application/json), "
                                   f"not {label[:64]}")


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """A 400 when ``value`` nests objects/lists deeper than ``limit`` (no recursion)."""
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [child for node in level
                 for child in (node.values() if isinstance(node, dict) else
                               node if isinstance(node, list) else ())]
        if not level:
            return
    raise InvalidRequest(f"the JSON is nested more than {limit} levels deep")


def text_field(body: dict[str, Any], name: str, default: str = "") -> str:
    """A string member of a request body (absent or null: ``default``)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string", param=name)
    return value.strip() or default
