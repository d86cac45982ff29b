"""Which failures are the account's fault, and of what kind.

The kind picks the backoff (``health.cooldown.<kind>``). A failure that is
the caller's (input too long, content filter, invalid JSON output, a bad
request) or the server's own configuration returns None: it never marks an
account. Login failures are reported by the token keeper itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import (
    LoginFailed,
    ProxyError,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
)

EMPTY_OUTPUT_CODE = "upstream_empty_output"


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str
    reason: str
    retry_after: float = 0.0  # what the upstream asked for, if anything


def classify(exc: BaseException) -> Failure | None:
    """The account-level failure ``exc`` stands for, or None."""
    if not isinstance(exc, ProxyError) or isinstance(exc, LoginFailed):
        return None
    reason = exc.detail or exc.message
    if isinstance(exc, UpstreamRateLimited):
        return Failure("rate_limited", reason, float(exc.retry_after or 0))
    if isinstance(exc, RateLimited):
        # Pool-level 429s (queue full, all cooling) are nobody's account's fault.
        return Failure("rate_limited", reason) if exc.code == EMPTY_OUTPUT_CODE else None
    envelope = getattr(exc, "envelope", None)  # an UpstreamCallError's reply
    if isinstance(exc, UpstreamAuthError) or getattr(envelope, "needs_refresh", False):
        # A token refused again right after a fresh login: banned or muted.
        return Failure("auth", reason)
    if isinstance(exc, UpstreamError) and exc.retryable:
        # PoW failures included: an unsupported algorithm is not retryable
        # (every account gets the same), so it marks none of them.
        return Failure("upstream", reason, float(exc.retry_after or 0))
    return None
