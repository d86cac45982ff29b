"""Account leases shared by every instance on one Redis, and the cluster's
one line of requests waiting for them.

Each account has a sorted set of its leases scored by expiry (ms, Redis's
own clock), and one more set holds every lease for the global limit. A
Lua script takes a lease in one round trip: it drops expired members, checks
the global and per-account counts, and adds the lease to the first account
of the caller's preference order with room that no request waiting longer,
on any instance, has the first claim to (:mod:`ds2proxy.state.lease_scripts`).
A request refused joins the line in the same step (a ticket), so however
the instances' requests interleave, a freed lease goes to the oldest waiter
that can take it. Releasing removes the lease and names, on
``leases:freed``, the tickets its capacity now goes to; their instances
wake exactly those (no message while nobody waits).

A lease lives ``lease_ttl_seconds`` unless renewed: every instance renews
the leases and tickets it holds every third of that (and reaps expired
leases, announcing the capacity it found; a wake-up it missed is caught
then), so the leases and waiters of an instance killed with -9 are gone
within ``lease_ttl_seconds``. Releases and departures from the line go out
in the background, every one waiting at that moment in one call; one that
cannot reach Redis is kept and replayed when Redis is back (and would
expire anyway), see :mod:`ds2proxy.state.releases`. When Redis loses its
data, with or without an outage, the leases and tickets held here are put
back (:mod:`ds2proxy.state.redis_epoch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections.abc import Callable

from . import lease_scripts as scripts
from .errors import StateUnavailable
from .redis_epoch import Epoch
from .redis_link import RedisLink
from .releases import Releases

log = logging.getLogger("ds2proxy.state")

Waker = Callable[[list[str]], None]


class RedisLeases:
    """The shared half of the account pool (see :class:`ds2proxy.scheduler.AccountPool`)."""

    def __init__(self, link: RedisLink, ttl_seconds: int) -> None:
        self.link = link
        self.ttl_ms = ttl_seconds * 1000
        self.instance = uuid.uuid4().hex[:12]
        self._mine = self.instance + ":"
        self.channel = link.channel("leases", "freed")
        self._seq = itertools.count(1)
        self._held: dict[str, str] = {}  # lease -> account
        self._line: dict[str, int] = {}  # ticket -> its place in the cluster's line
        # ticket -> the place it had: a request served, then turned away by
        # the pacing gate, asks again from there, not from the back
        self._places: dict[str, int] = {}
        # lease -> the accounts it may be on (several when an acquire was cut
        # short); a ticket leaving the line -> ()
        self.releases: Releases[tuple[str, ...]] = Releases(
            link, self._send_releases, self._released, what="account lease releases")
        self._accounts: list[str] = []
        self._limits = (1, 1)  # per account, global: what a release hands on
        self._prefix = link.key("leases", "account", "")
        self._keys = [link.key("leases", "all"), link.key("leases", "line"),
                      link.key("leases", "tickets"), link.key("leases", "wants"),
                      link.key("leases", "places")]
        self.epoch = Epoch(link)
        self._keys += self.epoch.keys
        self._chores: set[asyncio.Task[None]] = set()  # renewals asked for out of turn
        self._announcing: asyncio.TimerHandle | None = None
        self._restoring: asyncio.Task[None] | None = None
        self.counts: dict[str, int] = {}
        self.total = 0
        self._lists: dict[frozenset[str], str] = {}  # accounts -> their sorted JSON
        self._acquire = link.client.register_script(scripts.ACQUIRE)
        self._release = link.client.register_script(scripts.RELEASE)
        self._renew = link.client.register_script(scripts.RENEW)
        self._wake: Waker = lambda tickets: None
        self._renewer: asyncio.Task[None] | None = None

    # -- wiring ------------------------------------------------------------------------

    def start(self, accounts: list[str], wake: Waker, wake_all: Callable[[], None]) -> None:
        """Renew held leases and tickets; ``wake(tickets)`` for this
        instance's tickets that capacity is free for."""
        self._accounts = list(accounts)
        self._wake = wake
        self.link.subscribe(self.channel, self._on_freed)
        self.link.on_up(self.releases.replay)
        # Redis may have restarted empty: streams running here count again,
        # and requests waiting here take their places in line again. A lease
        # released meanwhile may come back, unrenewed: it expires.
        self.link.on_up(lambda: self.renew("restore"))
        self.link.on_up(wake_all)
        self.link.on_down(wake_all)
        self.link.on_subscribed(wake_all)  # notices sent while unsubscribed were lost
        self.link.subscribe(self.epoch.channel, self._on_lost)
        self._renewer = asyncio.create_task(self._renew_forever(), name="ds2proxy-lease-renew")
        self._kick()  # learn the data generation before anything is held

    def configure(self, accounts: list[str], limits: tuple[int, int] | None = None) -> None:
        """The accounts renewal counts, and the (per-account, global) limits a
        release or a reap hands capacity on by (known before any acquire here)."""
        self._accounts = list(accounts)
        if limits is not None:
            self._limits = limits

    async def close(self) -> None:
        if self._announcing is not None:
            self._announcing.cancel()
        for task in [self._renewer, *self._chores]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for lease, account in list(self._held.items()):
            self.release(account, lease)
        for ticket in list(self._line):
            self.leave(ticket)
        await self.releases.replay()
        if self.releases.kept:
            log.error("%d account leases could not be released before exit; they expire "
                      "within %d s", len(self.releases.kept), self.ttl_ms // 1000)

    # -- leasing -----------------------------------------------------------------------

    def ticket(self) -> str:
        """A new name for one request's place in the cluster's line."""
        return f"{self.instance}:t{next(self._seq)}"

    async def acquire(self, ordered: list[str], per_account: int, global_limit: int,
                      ticket: str = "", join: bool = False) -> tuple[str, str] | None:
        """(account, lease) for the first account in ``ordered`` with room left
        after every request waiting has had its share (those ahead of
        ``ticket``), or None (then ``ticket`` is in line: when ``join``, or
        when it was already)."""
        if not self.link.ready:  # nothing sent, nothing to take back
            raise StateUnavailable()
        self._limits = (per_account, global_limit)
        lease = f"{self.instance}:{next(self._seq)}"
        args = [self._prefix, lease, self.ttl_ms, per_account, global_limit, ticket,
                "1" if join else "0", self.channel, self._places.get(ticket, 0),
                self._wants(ordered), *ordered, *self.epoch.args(self._holding)]
        try:
            index, place, epoch, settling = await self.link.call(
                lambda: self._acquire(keys=self._keys, args=args))
        except BaseException:
            # Cancelled or timed out: the script may have run; take no chances.
            self._forget(lease, tuple(ordered))
            self._line.pop(ticket, None)
            self._forget(ticket, ())
            raise
        self._saw(epoch, int(settling))
        if int(place):
            self._places[ticket] = int(place)
        if index <= 0:
            if int(place):
                self._line[ticket] = int(place)
            return None
        self._line.pop(ticket, None)
        account = ordered[index - 1]
        self._held[lease] = account
        self._adjust(account, +1)
        return account, lease

    def _wants(self, ordered: list[str]) -> str:
        """The accounts of a ticket as Redis keeps them: one sorted JSON list
        for every ticket wanting the same ones (made once here, too)."""
        accounts = frozenset(ordered)
        text = self._lists.get(accounts)
        if text is None:
            if len(self._lists) >= 64:
                self._lists.clear()
            text = self._lists[accounts] = json.dumps(sorted(accounts))
        return text

    def leave(self, ticket: str) -> None:
        """The request of ``ticket`` waits no more (served elsewhere, gave up,
        went away): its place goes, in the background."""
        self._places.pop(ticket, None)
        if self._line.pop(ticket, None) is not None:
            self._forget(ticket, ())

    def release(self, account: str, lease: str) -> None:
        """Give a lease back without blocking the caller (a task does the I/O)."""
        self._held.pop(lease, None)
        self._forget(lease, (account,))

    def _forget(self, ident: str, accounts: tuple[str, ...]) -> None:
        self.releases.add(ident, accounts)

    async def _send_releases(self, batch: dict[str, tuple[str, ...]]) -> list[int]:
        """Every lease of ``batch`` off every account it may be on, every
        ticket out of line: one call."""
        args: list[str | int] = [self._prefix, self.channel, *self._limits]
        for ident, group in batch.items():
            for account in group or ("",):
                args += (account, ident)
        args += self.epoch.args(self._holding)
        freed = iter(await self._release(keys=self._keys, args=args))
        return [sum(int(next(freed)) for _ in group or ("",)) for group in batch.values()]

    def _released(self, ident: str, accounts: tuple[str, ...], freed: int) -> None:
        if freed and accounts:
            self._adjust(accounts[0] if len(accounts) == 1 else "", -1)

    def _adjust(self, account: str, delta: int) -> None:
        if account:
            self.counts[account] = max(0, self.counts.get(account, 0) + delta)
        self.total = max(0, self.total + delta)

    # -- renewal and wake-ups ----------------------------------------------------------

    async def renew(self, mode: str = "XX") -> None:
        """Renew the leases and tickets held here, reap expired leases, refresh
        the counts, wake the tickets here that capacity is free for
        (``mode="restore"``: also re-add what Redis has lost, as when the
        data generation changed; ``"announce"``: wake every instance's)."""
        accounts = self._accounts
        # Every lease held, on a removed account too: its request still runs
        # and counts against the global limit until it ends (as embedded).
        pairs = [x for lease, acc in self._held.items() for x in (acc, lease)]
        line = [x for ticket, place in self._line.items() for x in (ticket, place)]
        args = [self._prefix, self.channel, *self._limits, self.ttl_ms, mode,
                len(accounts), *accounts, len(pairs) // 2, *pairs, *line,
                *self.epoch.args(self._holding)]
        counts, due, back, epoch, settling = await self.link.call(
            lambda: self._renew(keys=self._keys, args=args))
        self.epoch.learn(epoch)  # what is held here is written in it now
        self._saw(epoch, int(settling))
        self.total = int(counts[0])
        self.counts = {a: int(n) for a, n in zip(accounts, counts[1:])}
        back = [_text(t) for t in back]
        for ticket in back:
            if ticket not in self._line:
                # It left while this call was on its way, and its departure
                # reached Redis first: the call put it back, so out it goes
                # again (in line unrenewed, it would hold a share for a TTL).
                self._forget(ticket, ())
        self._wake_mine([*(_text(t) for t in due), *back])

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            with contextlib.suppress(StateUnavailable):
                await self.renew()

    # -- Redis losing its data ---------------------------------------------------------

    @property
    def _holding(self) -> bool:
        return bool(self._held or self._line)

    def _saw(self, epoch: bytes | str, settling_ms: int) -> None:
        """A script's word on the data generation: put back what is held here
        when it changed; wake the line once Redis has settled."""
        if self.epoch.lost(epoch):
            self._restore_soon()
        if settling_ms > 0 and self._announcing is None:
            self._announcing = asyncio.get_running_loop().call_later(
                settling_ms / 1000 + 0.05, self._settled)

    def _settled(self) -> None:
        self._announcing = None
        self._kick("announce")

    def _on_lost(self, epoch: str) -> None:
        if self.epoch.lost(epoch):
            self._restore_soon()

    def _restore_soon(self) -> None:
        """One renewal puts back what is held here, however many answers and
        notices told of the loss meanwhile (each would cost Redis a call over
        every lease held here)."""
        if self._restoring is None or self._restoring.done():
            self._restoring = self._kick()

    def _kick(self, mode: str = "XX") -> asyncio.Task[None]:
        """Renew now, in the background (the script restores on a new generation)."""
        task = asyncio.get_running_loop().create_task(self._renew_quietly(mode),
                                                      name="ds2proxy-lease-restore")
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)
        return task

    async def _renew_quietly(self, mode: str) -> None:
        with contextlib.suppress(StateUnavailable):
            await self.renew(mode)

    def _on_freed(self, payload: str) -> None:
        self._wake_mine(payload.split())

    def _wake_mine(self, tickets: list[str]) -> None:
        # Not only those known in line: a ticket named as its own acquire
        # returns is still this instance's.
        mine = [t for t in tickets if t.startswith(self._mine)]
        if mine:
            self._wake(mine)

    @property
    def recheck_seconds(self) -> float:
        """How often a missed wake-up is caught (renewal names the tickets due)."""
        return self.ttl_ms / 3000

    @property
    def held(self) -> int:
        return len(self._held)

    def in_line(self, ticket: str) -> bool:
        """Whether ``ticket`` holds a place in the cluster's line."""
        return ticket in self._line


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
