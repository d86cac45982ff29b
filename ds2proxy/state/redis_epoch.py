"""Noticing that Redis lost its data while the connection stayed up.

A FLUSHALL, a restart without persistence between two of the link's pings,
or a failover to an empty replica leaves the link up, so its "back up" hooks
never run: the leases and key slots an instance holds would be gone from
Redis while their requests run, and other instances would see capacity that
is not free. Every script that takes or renews them first reads the
generation key ``<prefix>state:epoch``. When it is missing, the script sets
a fresh random one and publishes it on ``state:lost``; an instance that
remembered another generation (told by the notice, by a script's answer, or
at its next renewal) puts back what it holds, in one idempotent call (a
lease is a set member, so nothing counts twice).

A loss found by an instance that knew the former generation, or holds
something, also starts a short settling time (``state:settling``) during
which no account lease is granted: the holders re-assert theirs first, so a
request elsewhere waits in line instead of taking capacity that is in use.
A new cluster (nobody knew a generation) starts without one.
"""

from __future__ import annotations

import uuid

from .redis_link import RedisLink

# Long enough for the notice and one re-asserting call from every instance,
# also one whose link is reconnecting after Redis restarted empty (a ping a
# second, then its on-up renewal); an instance that missed the notice
# re-asserts at its next renewal anyway.
SETTLE_MS = 3000

# Prepended to a script: it takes the last two KEYS (the generation and the
# settling key) and the last four ARGV (the generation the caller knows, the
# notice channel, a fresh generation, the settling time in ms) off the lists,
# so a script's own arguments are as they were. ``lost``: the caller's
# generation is not the current one (it is to put back what it holds).
LUA = """
local EPOCH_SETTLE = tonumber(table.remove(ARGV))
local EPOCH_FRESH = table.remove(ARGV)
local EPOCH_CHANNEL = table.remove(ARGV)
local EPOCH_KNOWN = table.remove(ARGV)
local SETTLE_KEY = table.remove(KEYS)
local EPOCH_KEY = table.remove(KEYS)
local epoch = redis.call('GET', EPOCH_KEY)
if not epoch then
  epoch = EPOCH_FRESH
  redis.call('SET', EPOCH_KEY, epoch)
  if EPOCH_SETTLE > 0 then redis.call('SET', SETTLE_KEY, '1', 'PX', EPOCH_SETTLE) end
  redis.call('PUBLISH', EPOCH_CHANNEL, epoch)
end
local lost = EPOCH_KNOWN ~= '' and epoch ~= EPOCH_KNOWN
local function settling_ms()
  return math.max(0, redis.call('PTTL', SETTLE_KEY))
end
"""


class Epoch:
    """The data generation of Redis this instance's holdings were written in."""

    def __init__(self, link: RedisLink) -> None:
        self.keys = [link.key("state", "epoch"), link.key("state", "settling")]
        self.channel = link.channel("state", "lost")
        self.known = ""  # none seen yet
        # The generation a script of this instance sets if Redis has none:
        # one value until it is seen in use (then a new one, for the next
        # loss), rather than a fresh random value drawn for every call.
        self.fresh = uuid.uuid4().hex

    def args(self, holding: bool) -> list[str | int]:
        """The last ARGV of a script (``holding``: this instance holds something)."""
        settle = SETTLE_MS if self.known or holding else 0
        return [self.known, self.channel, self.fresh, settle]

    def lost(self, seen: bytes | str) -> bool:
        """Whether ``seen`` (a script's answer) says Redis lost what this
        instance wrote; the first generation seen is simply learnt."""
        text = self._seen(seen)
        if not self.known:
            self.known = text
        return text != self.known

    def learn(self, seen: bytes | str) -> None:
        """What this instance holds is written in generation ``seen``."""
        self.known = self._seen(seen)

    def _seen(self, seen: bytes | str) -> str:
        text = seen.decode() if isinstance(seen, bytes) else seen
        if text == self.fresh:  # this instance's value became the generation
            self.fresh = uuid.uuid4().hex
        return text
