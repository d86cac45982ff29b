"""What the account pool keeps per account, its limits, the lease a request
holds, and the interface of a lease store several instances share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .config import AccountConfig, RuntimeSettings

if TYPE_CHECKING:
    from .scheduler import AccountPool


@dataclass(slots=True)
class AccountState:
    """Runtime state of one managed account (the config holds the credentials)."""

    config: AccountConfig
    token: str = ""
    token_obtained_at: float = 0.0
    inflight: int = 0
    last_error: str = ""
    login_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def identifier(self) -> str:
        return self.config.identifier


@dataclass(frozen=True, slots=True)
class Limits:
    per_account: int
    queue: int
    global_inflight: int

    @classmethod
    def from_runtime(cls, runtime: RuntimeSettings, accounts: int) -> Limits:
        capacity = max(accounts, 1) * runtime.account_max_inflight
        queue = capacity if runtime.account_max_queue is None else runtime.account_max_queue
        glob = runtime.global_max_inflight or capacity
        return cls(runtime.account_max_inflight, queue, glob)


class SharedLeases(Protocol):
    """In-flight counts kept for several instances (``state.backend: redis``,
    :class:`ds2proxy.state.leases.RedisLeases`). Without one, the pool counts
    in this process alone, exactly as a single instance always has."""

    recheck_seconds: float
    total: int

    def start(self, accounts: list[str], wake: Callable[[list[str]], None],
              wake_all: Callable[[], None]) -> None: ...
    def configure(self, accounts: list[str], limits: tuple[int, int] | None = None
                  ) -> None: ...
    def ticket(self) -> str: ...
    def in_line(self, ticket: str) -> bool: ...
    async def acquire(self, ordered: list[str], per_account: int, global_limit: int,
                      ticket: str = "", join: bool = False) -> tuple[str, str] | None: ...
    def leave(self, ticket: str) -> None: ...
    def release(self, account: str, lease: str) -> None: ...
    async def close(self) -> None: ...


class Lease:
    """One slot on one account; release exactly once (extra calls are no-ops)."""

    __slots__ = ("account", "granted_at", "shared_id", "_pool", "_released")

    def __init__(self, pool: AccountPool, account: AccountState, shared_id: str = "") -> None:
        self._pool = pool
        self.account = account
        self.shared_id = shared_id  # the lease's name in the shared store, if any
        # On the health tracker's clock: a failure of a request granted before
        # the account's current cooldown began is of the same burst.
        self.granted_at = pool.health.now()
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self.account, self.shared_id)
