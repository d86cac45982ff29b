"""The overview's account counts and rows without a walk of every account.

The dashboard polls the overview; with thousands of accounts, building each
account's status per poll (``AccountPool.status``) held the event loop for
over 10 ms. Every account is usable unless it is busy to its limit, not
healthy, or held back by pacing, and the pool and its health tracker keep
those few listed as they change: the counts are read off them, so a poll
costs what the busy and troubled accounts cost, whatever the pool's size.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..health import DISABLED, HEALTHY, STATES

if TYPE_CHECKING:
    from ..account_state import AccountState
    from ..scheduler import AccountPool

def queue_counts(pool: AccountPool) -> dict[str, Any]:
    """``pool.status()`` without its two account lists (the same numbers)."""
    limits, health, total = pool.limits, pool.health, pool.size
    busy = {s.identifier: s.inflight for s in pool.busy()}
    troubled = [i for i in health.troubled() if i in pool]
    by_state = dict.fromkeys(STATES, 0)
    for identifier in troubled:
        by_state[health.state(identifier)] += 1
    by_state[HEALTHY] = total - len(troubled)
    blocked = {i for i, inflight in busy.items() if inflight >= limits.per_account}
    blocked.update(i for i in troubled if not health.eligible(i))
    blocked.update(i for i in pool.pacer.maybe_waiting() if i in pool and not pool.pacer.ready(i))
    global_left = max(0, limits.global_inflight - pool.inflight)
    available = total - len(blocked) if global_left else 0
    held = sum(inflight for i, inflight in busy.items() if i not in blocked)
    slots = limits.per_account * available - held if global_left else 0
    return {
        "available": available,
        "free_slots": min(slots, global_left),
        "in_use": pool.inflight if pool.shared is None else pool.shared.total,
        "total": total,
        "by_state": by_state,
        "max_inflight_per_account": limits.per_account,
        "global_max_inflight": limits.global_inflight,
        "max_queue_size": limits.queue,
        "waiting": pool.waiting,
        "recommended_concurrency": min(limits.global_inflight,
                                       (total - by_state[DISABLED]) * limits.per_account),
    }


def worth_showing(pool: AccountPool, failed_tests: Iterable[str], order: dict[str, int],
                  limit: int) -> list[AccountState]:
    """Up to ``limit`` accounts in config order (``order``: each one's place),
    those busy, unhealthy (a refused login makes an account login_failing)
    or failing their last account test (``failed_tests``) before the quiet ones."""
    loud = {s.identifier for s in pool.busy()}
    loud.update(i for i in pool.health.troubled() if i in pool)
    for identifier in failed_tests:
        state = pool.find(identifier)
        if state is not None and state.last_error:
            loud.add(state.identifier)
    first = sorted(loud, key=lambda i: order.get(i, len(order)))[:limit]
    shown = [s for s in (pool.find(i) for i in first) if s is not None]
    if len(shown) < limit:
        for state in pool.accounts():  # a copy of the list; stops after a screenful
            if len(shown) >= limit:
                break
            if state.identifier not in loud:
                shown.append(state)
    return shown
