"""Slow down guessing of the admin key without ever locking the admin out.

A correct key is always checked and accepted at once, however many wrong
ones came before from the same address (behind a reverse proxy every
visitor shares one address, so a lock-out there would lock out everyone).
What is slowed down is each *wrong* answer: after a few free failures
(people mistype), the 401 is held back for a delay that doubles with every
further failure, up to a cap. Guessing in parallel does not get round that:
while ``max_pending`` attempts from an address are being checked or held,
more attempts from it are answered 429 without being checked (checking a
password takes a while, so attempts being checked count too, or a burst of
guesses would all be checked before the first of them had failed). An address's
failures are forgotten after ``forget_after`` seconds without one. IPv6
addresses count by their /64 (see :func:`address_key`), and every /64 also
counts toward its /48, held to the same limits: a site handed a /48 holds
65,536 /64s and would otherwise get five free guesses and ``max_pending``
held ones in each. Above every address, each failure also counts toward
one server-wide tally: past ``global_free_attempts`` failures (from anywhere,
within ``forget_after`` of each other) every wrong answer is held as if its
address had failed that often, so guessing from many addresses or prefixes
buys no fast answers either. Nothing is ever refused for what other
addresses did: a right key from an unrelated address still gets in at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import RateLimited


@dataclass(slots=True)
class _Record:
    failures: int = 0
    pending: int = 0
    last_failure: float = 0.0


WIDER_PREFIX = 48


def address_key(remote: str | None) -> str:
    """What failures are counted per: an IPv4 address, or an IPv6 /64. A
    host is usually handed a whole /64 and may send from any address in it,
    so counting per IPv6 address would let it change address for every guess."""
    try:
        ip = ipaddress.ip_address((remote or "").partition("%")[0])
    except ValueError:
        return remote or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def counted_as(address: str) -> tuple[str, ...]:
    """The keys a failure from ``address`` counts toward: the key itself and,
    for an IPv6 /64, the /48 holding it."""
    try:
        network = ipaddress.ip_network(address)
    except ValueError:
        return (address,)
    if network.version == 6 and network.prefixlen > WIDER_PREFIX:
        return (address, str(network.supernet(new_prefix=WIDER_PREFIX)))
    return (address,)


class LoginThrottle:
    def __init__(self, *, free_attempts: int = 5, base_delay: float = 1.0,
                 max_delay: float = 60.0, max_pending: int = 8, forget_after: float = 900.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_addresses: int = 10000, global_free_attempts: int = 100) -> None:
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_pending = max_pending
        self.forget_after = forget_after
        self._clock = clock
        self._sleep = sleep
        self._max_addresses = max_addresses
        self.global_free_attempts = global_free_attempts
        self._records: dict[str, _Record] = {}
        self._everyone = _Record()

    def admit(self, address: str) -> None:
        """Before a key is checked: 429 while the address (or its /48) has too
        many held failures."""
        for key in counted_as(address):
            record = self._records.get(key)
            if record is not None and record.pending >= self.max_pending:
                where = "this address" if key == address else f"its network {key}"
                raise RateLimited(f"too many failed admin logins from {where} are still "
                                  "pending; try again shortly",
                                  retry_after=max(1, math.ceil(self.delay_for(record.failures))),
                                  code="login_throttled")

    @contextmanager
    def checking(self, address: str) -> Iterator[None]:
        """Admit one attempt (or 429) and count it as pending while its key is checked."""
        self.admit(address)
        keys = counted_as(address)
        records = [self._record(key) for key in keys]
        for record in records:
            record.pending += 1
        try:
            yield
        finally:
            for key, record in zip(keys, records):
                record.pending -= 1
                if not record.pending and not record.failures:
                    # Nothing to remember (a right key, or a wrong one about to be
                    # counted by failed()): addresses that only ever get in keep no record.
                    self._records.pop(key, None)

    async def failed(self, address: str) -> None:
        """Count a wrong key toward the address, its /48 and the server-wide
        tally, and hold its answer for the longest delay any of them earned."""
        now = self._clock()
        everyone = self._everyone
        if now - everyone.last_failure > self.forget_after:
            everyone.failures = 0
        everyone.failures += 1
        everyone.last_failure = now
        records = [self._record(key) for key in counted_as(address)]
        for record in records:
            record.failures += 1
            record.last_failure = now
        delay = max(self.delay_for(everyone.failures, self.global_free_attempts),
                    *(self.delay_for(r.failures) for r in records))
        if delay <= 0:
            return
        for record in records:
            record.pending += 1
        try:
            await self._sleep(delay)
        finally:
            for record in records:
                record.pending -= 1

    def delay_for(self, failures: int, free: int | None = None) -> float:
        """How long the answer to the ``failures``-th failure is held (after
        ``free`` unheld ones, by default ``free_attempts``)."""
        over = failures - (self.free_attempts if free is None else free)
        return 0.0 if over <= 0 else min(self.max_delay, self.base_delay * 2 ** (over - 1))

    def failures(self, address: str) -> int:
        record = self._records.get(address)
        return record.failures if record else 0

    def pending(self, address: str) -> int:
        record = self._records.get(address)
        return record.pending if record else 0

    def _record(self, address: str) -> _Record:
        record = self._records.get(address)
        if record is not None and record.pending == 0 and (
                self._clock() - record.last_failure > self.forget_after):
            record.failures = 0
        if record is None:
            record = self._records[address] = _Record(last_failure=self._clock())
            self._forget_old()
        return record

    def _forget_old(self) -> None:
        """Bound memory: once there are too many records, drop the idle
        longest down to nine tenths of the bound. A tenth at a time, so the
        sort is paid once per thousand new addresses: paid for each one, a
        stranger sending every guess from a fresh address (an IPv6 /48 holds
        65,536 /64s) cost the event loop milliseconds per request."""
        if len(self._records) <= self._max_addresses:
            return
        idle = sorted((a for a, r in self._records.items() if r.pending == 0),
                      key=lambda a: self._records[a].last_failure)
        for address in idle[: len(self._records) - self._max_addresses * 9 // 10]:
            del self._records[address]
