"""The small exception hierarchy every layer raises.

Each error carries what a dialect needs to render it in its own shape: the
HTTP status, an OpenAI-style ``type`` and ``code``, the offending ``param``
and, for 429s, ``retry_after``. Dialects choose the shape (see
``ds2proxy.dialects.errors``); nobody else builds error bodies.
"""

from __future__ import annotations


class ProxyError(Exception):
    """Base class: an error the client should see.

    ``message`` is all the caller ever sees. Which pool account failed, and
    the upstream's own words about it, are the operator's business: they
    ride along in ``account`` and ``detail`` for the log and the dashboard.
    """

    status: int = 500
    type: str = "api_error"
    code: str = "internal_error"
    account: str | None = None
    detail: str = ""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if type is not None:
            self.type = type
        self.param = param
        self.retry_after = retry_after

    @property
    def operator_message(self) -> str:
        """The message for the log and the dashboard: account and detail included."""
        text = self.detail or self.message
        return f"account {self.account}: {text}" if self.account else text


class InvalidRequest(ProxyError):
    """The request is malformed or names something that does not exist (400)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ModelNotFound(InvalidRequest):
    code = "model_not_found"

    def __init__(self, model: str, *, status: int = 400) -> None:
        super().__init__(f'model "{brief(model)}" is not available', param="model",
                         status=status)


def brief(text: str, limit: int = 100) -> str:
    """A client-supplied name cut to ``limit`` characters for a message."""
    return text if len(text) <= limit else text[:limit] + "…"


class AuthenticationFailed(ProxyError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ProxyError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(ProxyError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class PayloadTooLarge(ProxyError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ToolChoiceViolation(ProxyError):
    status = 422
    type = "invalid_request_error"
    code = "tool_choice_violation"

    def __init__(self, message: str = "tool_choice requires at least one valid tool call.") -> None:
        super().__init__(message)


class OutputInvalid(ProxyError):
    """The model did not produce the requested JSON, even after one repair.

    A 4xx, not a 5xx: clients retry 5xx for minutes, while a caller such as
    Gemini CLI's model router falls back at once on a 4xx.
    """

    status = 422
    type = "invalid_request_error"
    code = "json_output_invalid"


class RateLimited(ProxyError):
    """Pool full, queue full, or an upstream rate limit: always has Retry-After."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after, code=code)


class NoAccountAvailable(ProxyError):
    """No upstream account can ever serve (none configured, all disabled)."""

    status = 503
    type = "api_error"
    code = "no_account_available"


class ContentFiltered(ProxyError):
    status = 400
    type = "invalid_request_error"
    code = "content_filter"


class NotImplementedFeature(ProxyError):
    status = 501
    type = "api_error"
    code = "not_implemented"


class UpstreamError(ProxyError):
    """The DeepSeek upstream failed. ``retryable`` marks account-level faults
    worth trying again on another account (before the first byte)."""

    status = 502
    type = "api_error"
    code = "upstream_error"

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None,
                 code: str | None = None, retry_after: int | None = None,
                 account: str | None = None, detail: str = "") -> None:
        super().__init__(message, status=status, code=code, retry_after=retry_after)
        self.retryable = retryable
        self.account = account
        self.detail = detail


class UpstreamTimeout(UpstreamError):
    """The upstream stayed silent too long: a 504, so clients can tell a slow
    upstream from a broken one."""

    status = 504
    code = "upstream_timeout"


class UpstreamRateLimited(UpstreamError):
    """The upstream itself answered 429: worth another account, else a 429."""

    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


# What a caller is told when a pool account fails (which one is the operator's business).
ACCOUNT_UNUSABLE = "an upstream account of this server could not be used; try again later"


class UpstreamAuthError(UpstreamError):
    """The upstream refused a managed account's credentials (login or token).

    A fault of the gateway's own accounts, not of the caller's key: a 401
    would tell an agent its API key is wrong. (A refused pass-through token
    is the caller's own credential: that is AuthenticationFailed, 401.)
    """

    status = 502
    type = "api_error"
    code = "upstream_auth_failed"


class LoginFailed(UpstreamAuthError):
    """A managed account could not log in (refused, or no password to try)."""


class PowError(UpstreamError):
    """The proof-of-work challenge could not be solved (expired, unknown
    algorithm, or no answer in range)."""

    code = "pow_failed"
