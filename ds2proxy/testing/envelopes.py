"""The JSON reply shapes of the DeepSeek web API (spec §1.2), as aiohttp responses."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

INVALID_TOKEN = (40003, "Authorization Failed (invalid token)")
CLIENT_TOO_OLD = (40005, "CLIENT_VERSION_TOO_LOW")
WRONG_PASSWORD = (2, "PASSWORD_OR_USER_NAME_IS_WRONG")
# Not observed on the real server; shapes chosen to look like its business errors.
SESSION_NOT_FOUND = (3, "CHAT_SESSION_NOT_FOUND")
MESSAGE_NOT_FOUND = (4, "MESSAGE_NOT_FOUND")
NOTHING_TO_CONTINUE = (5, "NOTHING_TO_CONTINUE")


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def ok(biz_data: Any) -> web.Response:
    """Success: HTTP 200, ``code 0``, ``biz_code 0``."""
    return _json({"code": 0, "msg": "", "data": {"biz_code": 0, "biz_msg": "",
                                                 "biz_data": biz_data}})


def biz_error(error: tuple[int, str]) -> web.Response:
    """A business failure: ``code 0`` but ``biz_code != 0``."""
    return envelope(0, "", *error)


def code_error(error: tuple[int, str]) -> web.Response:
    """A transport / auth failure: HTTP 200, ``code != 0``, ``data null``."""
    return envelope(*error, 0, "")


def envelope(code: int, msg: str, biz_code: int, biz_msg: str) -> web.Response:
    """Any failure envelope; ``data`` is null when ``code`` already failed."""
    data = {"biz_code": biz_code, "biz_msg": biz_msg, "biz_data": None} if not code else None
    return _json({"code": code, "msg": msg, "data": data})


def missing_field(name: str) -> web.Response:
    """HTTP 422 validation error naming the missing body field."""
    return _json({"detail": [{"loc": f"body.{name}", "msg": "field required"}]}, status=422)
