"""Pass-through tokens checked with the upstream before a large body is read.

Any credential that is not a configured key passes as a DeepSeek user token
until the upstream refuses it, so without a check a made-up token could make
the server read and parse a body of ``runtime.max_body_bytes``. Bodies above
:data:`CHECK_ABOVE_BYTES` (or of unknown length) from a token not seen
accepted in the last :data:`TTL_SECONDS` wait for one cheap, side-effect-free
upstream call (the session list) first.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from aiohttp import web

from .auth import Caller
from .errors import AuthenticationFailed
from .upstream.client import DeepSeekClient
from .upstream.envelope import UpstreamCallError
from .upstream.credentials import NOT_A_KEY_NOR_TOKEN

CHECK_ABOVE_BYTES = 1 << 20
TTL_SECONDS = 600.0
REMEMBERED = 1024


def needs_check(request: web.Request) -> bool:
    """Whether the body is large enough (or of unknown size) to check first."""
    length = request.content_length
    return request.can_read_body and (length is None or length > CHECK_ABOVE_BYTES)


class VerifiedTokens:
    """Identities (hashes) of pass-through tokens the upstream accepted recently."""

    def __init__(self) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()

    async def verify(self, client: DeepSeekClient, caller: Caller) -> None:
        """Return when the token is known good; 401 when the upstream refuses it."""
        now = time.monotonic()
        if self._until.get(caller.identity, 0.0) > now:
            return
        try:
            await client.check_token(caller.credential)
        except UpstreamCallError as exc:
            if exc.envelope.needs_refresh:
                raise AuthenticationFailed(NOT_A_KEY_NOR_TOKEN) from None
            raise
        self._until[caller.identity] = now + TTL_SECONDS
        self._until.move_to_end(caller.identity)
        while len(self._until) > REMEMBERED:
            self._until.popitem(last=False)
