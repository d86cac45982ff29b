"""The error a request gets when the shared state store cannot be reached."""

from __future__ import annotations

from ..errors import ProxyError


class StateUnavailable(ProxyError):
    """Redis is unreachable or too slow: a 503 the client may retry, in its
    family's error shape (never a hang, never a 500)."""

    status = 503
    type = "api_error"
    code = "state_unavailable"

    def __init__(self, message: str = "the shared state store is unavailable; retry shortly",
                 *, retry_after: int = 2) -> None:
        super().__init__(message, retry_after=retry_after)
