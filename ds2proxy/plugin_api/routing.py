"""The route wrapper: every plugin handler runs inside it.

It renders a :class:`~ds2proxy.errors.ProxyError` in the route's error
shape, and ends every request in :func:`request_ended`, the one place its
outcome is recorded (monitor, usage record, metrics, the request log line).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from .. import request_record
from ..error_bodies import ErrorStyle
from ..errors import ProxyError
from ..sse import STREAM_KEY, ClientGone
from .contract import Handler

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("ds2proxy.plugins")


def wrap_handler(handler: Handler, errors: ErrorStyle, core: Core, family: str = "") -> Handler:
    """Render ProxyErrors in the route's shape; every request ends in
    :func:`request_ended`, the one place its outcome is recorded (monitor,
    usage record, metrics, the request log line), disconnects included."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        core.monitor.request_started()
        record = _open_record(request, family)
        request[request_record.RECORD_KEY] = record
        token = request_record.enter(record)
        failure: ProxyError | None = None
        status = request_record.CLIENT_CLOSED
        try:
            try:
                await core.admit_shared(request)
                response = await handler(request)
            except ProxyError as exc:
                failure = exc
                if exc.account:
                    log.warning("%s failed: %s", request.path, exc.operator_message)
                response = await _error_response(request, errors, exc)
            except ClientGone:
                log.info("client went away during %s", request.path)
                _note_error(record, ProxyError("the client closed the connection",
                                               code="client_closed"))
                response = request[STREAM_KEY].response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except Exception as exc:
                log.exception("unhandled error in %s", request.path)
                failure = ProxyError(f"internal error: {type(exc).__name__}")
                response = await _error_response(request, errors, failure)
            status = request_record.CLIENT_CLOSED if record.error_code == "client_closed" \
                else response.status
            return response
        finally:
            request_record.leave(token)
            request_ended(core, request, record, failure, status)

    return wrapped


def _open_record(request: web.Request, family: str) -> request_record.RequestRecord:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    return request_record.RequestRecord(request_id=request.get(request_record.REQUEST_ID_KEY)
                                        or request_record.request_id_for(request),
                                        family=family, route=route, method=request.method)


def _note_error(record: request_record.RequestRecord, exc: ProxyError) -> None:
    record.error_code = exc.code
    record.error_message = exc.message[:300]


def request_ended(core: Core, request: web.Request, record: request_record.RequestRecord,
                  failure: ProxyError | None, status: int) -> None:
    """A request is over (answered, failed before or after its first byte,
    or abandoned by the client): the single point that records its outcome,
    so a failed request counts as one error however far it got."""
    if failure is not None:
        _note_error(record, failure)
        core.monitor.request_error(failure.operator_message, status=failure.status,
                                   path=request.path)
    core.monitor.request_finished()
    core.limiter.settle_late()  # an rpm owed to a turn that never took its slot
    record.finish(status)
    core.usage.finish(record)


async def _error_response(request: web.Request, errors: ErrorStyle,
                          exc: ProxyError) -> web.StreamResponse:
    stream = request.get(STREAM_KEY)
    if stream is not None and stream.prepared:
        # Headers are gone already: the plugin's in-band error was the answer.
        log.warning("error after the stream began on %s: %s", request.path, exc.message)
        return await stream.finish()
    response = with_request_id(errors(exc), request.get(request_record.REQUEST_ID_KEY, ""))
    if exc.status == 413 or request.content.exception() is not None:
        # The rest of the body will not be read (too large) or cannot be (a
        # broken encoding): the connection ends with this answer, so say so,
        # or the client sends its next request down a closing connection.
        response.force_close()
    return response


def with_request_id(response: web.Response, request_id: str) -> web.Response:
    """The error body names the request id inside its ``error`` object. A
    shape whose error is a bare string (Ollama's) stays exactly as its
    clients expect; the ``X-Request-Id`` header still names the request."""
    if not request_id or not isinstance(response.body, bytes):
        return response
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return response
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return response
    body["error"]["request_id"] = request_id
    response.body = orjson.dumps(body)
    return response
