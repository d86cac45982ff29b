"""The account pool's FIFO wait queue.

A request keeps one place in line from the moment it first waits until it
gets a lease or gives up, so a wake-up it cannot use does not send it to the
back. A free slot belongs to the longest-waiting request that can use it:
a request arriving as the slot frees waits behind it, and a woken request
that cannot use what was freed (pinned to another account, or failing over
away from that one) hands its wake-up on down the line.

With leases shared on Redis the line that decides is the cluster's (see
:mod:`ds2proxy.state.leases`): each request has a ticket there, and the
shared store names the tickets to wake. Such a wake-up is never lost: one
that comes while its request is busy asking (or before it has joined here)
is kept, and its next wait returns at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from .account_state import AccountState


class Waiter:
    """One request's place in line, and which accounts it can take."""

    __slots__ = ("pinned", "exclude", "fut", "ticket", "due")

    def __init__(self, pinned: AccountState | None, exclude: frozenset[str],
                 ticket: str = "") -> None:
        self.pinned = pinned
        self.exclude = exclude
        self.fut: asyncio.Future[None] | None = None
        self.ticket = ticket  # its place in the cluster's line (shared leases)
        self.due = False  # named by the cluster while not waiting: ask again at once

    def wants(self, state: AccountState) -> bool:
        if self.pinned is not None:
            return state is self.pinned
        return state.identifier not in self.exclude

    @property
    def woken(self) -> bool:
        """Told to try again, and has not yet."""
        return self.fut is not None and self.fut.done()

    def wake(self) -> bool:
        """Wake it if it is waiting; False when it is not."""
        if self.fut is None or self.fut.done():
            return False
        self.fut.set_result(None)
        return True

    def nudge(self) -> None:
        """The cluster says capacity is free for it: wake it, or have its next
        wait return at once."""
        if not self.wake():
            self.due = True


class WaitQueue:
    """Waiters in arrival order."""

    def __init__(self) -> None:
        self._line: list[Waiter] = []
        self._tickets: dict[str, Waiter] = {}  # requests holding a ticket, waiting or asking

    def __len__(self) -> int:
        return len(self._line)

    def expect(self, waiter: Waiter) -> Waiter:
        """A request with a ticket may be named before it joins the line."""
        self._tickets[waiter.ticket] = waiter
        return waiter

    def join(self, waiter: Waiter) -> None:
        self._line.append(waiter)

    def leave(self, waiter: Waiter) -> None:
        self._tickets.pop(waiter.ticket, None)
        if waiter in self._line:
            self._line.remove(waiter)

    def wake_tickets(self, tickets: list[str]) -> None:
        for ticket in tickets:
            waiter = self._tickets.get(ticket)
            if waiter is not None:
                waiter.nudge()

    def _ahead_of(self, waiter: Waiter | None) -> Iterator[Waiter]:
        for other in self._line:
            if other is waiter:
                return
            yield other

    def owed(self, state: AccountState, waiter: Waiter | None) -> bool:
        """Whether a request ahead of ``waiter`` (of everyone, for a request
        not in line) can take ``state``; the first such one is woken so the
        slot does not sit idle while ``waiter`` stands back."""
        for other in self._ahead_of(waiter):
            if other.wants(state):
                other.wake()
                return True
        return False

    def wake_one(self, after: Waiter | None = None) -> None:
        """Wake the longest-waiting request not yet woken (behind ``after``)."""
        line = self._line
        start = line.index(after) + 1 if after is not None and after in line else 0
        for waiter in line[start:]:
            if waiter.wake():
                return

    def wake_all(self) -> None:
        for waiter in self._line:
            waiter.wake()

    async def wait(self, waiter: Waiter, timeout: float) -> bool:
        """Wait until woken (True) or ``timeout`` seconds (False). A request
        cancelled after it was woken hands its wake-up on."""
        if waiter.due:
            waiter.due = False
            return True
        fut = waiter.fut = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return fut.done()  # woken just as the time ran out
        except asyncio.CancelledError:
            if fut.done():
                self.wake_one(after=waiter)
            raise
        finally:
            waiter.fut = None
        return True
