"""The one connection to Redis an instance owns, and whether it is usable.

Every call goes through :meth:`RedisLink.call` with a deadline, so a slow or
dead Redis costs a request at most ``CALL_TIMEOUT`` seconds and then a
:class:`StateUnavailable` (a 503), never a hang; the client library's socket
I/O is asyncio, so the event loop is never blocked. A watchdog pings Redis
every second: it flips :attr:`ready` (what ``/readyz`` reports), and when the
server comes back it reconnects and tells the subscribers (``on_up``) so
they can replay what they could not send. Pub/sub messages are dispatched
to handlers by channel from one listener task that resubscribes after a
reconnect and then tells ``on_subscribed`` hooks (notices sent meanwhile
were lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from .errors import StateUnavailable
from .settings import StateSettings, masked_url

# The optional extra (``pip install 'ds2proxy[redis]'``), imported when a
# link is made: the library costs ~8 MB of memory a server without Redis
# never needs. None once an import found it missing.
_NOT_LOADED: Any = object()
aioredis: Any = _NOT_LOADED
RedisError: type[Exception] = OSError

log = logging.getLogger("ds2proxy.state")

T = TypeVar("T")
REDIS_TIMEOUT_ENV = "DS2PROXY_REDIS_TIMEOUT"
DEFAULT_CALL_TIMEOUT = 2.0
MAX_CALL_TIMEOUT = 600.0


def env_call_timeout(env: Mapping[str, str] | None = None) -> float:
    """``DS2PROXY_REDIS_TIMEOUT`` in seconds (0.01 to 600); a ValueError
    says what is wrong with it (the command line refuses to start on it)."""
    text = (os.environ if env is None else env).get(REDIS_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_CALL_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0.01 <= value <= MAX_CALL_TIMEOUT:  # NaN fails this too
        raise ValueError(f"must be between 0.01 and {MAX_CALL_TIMEOUT:g} seconds, got {text}")
    return value


try:
    CALL_TIMEOUT = env_call_timeout()
except ValueError:  # reported by the command line; importing must not fail on it
    CALL_TIMEOUT = DEFAULT_CALL_TIMEOUT
PING_EVERY = 1.0
# How long a background writer lets more writes join one pipeline: the
# writes of many requests then cost one round trip instead of one each.
GATHER_SECONDS = 0.05
MISSING_EXTRA = ("state.backend is 'redis' but the redis client library is not installed; "
                 "install it with: pip install 'ds2proxy[redis]'")

# A pipeline's error reads "Command # N (<the command and its arguments>) of
# pipeline caused error: <what Redis said>": only the end is logged.
PIPELINE_ERROR = " of pipeline caused error: "
MAX_REASON = 200

Handler = Callable[[str], None]
Hook = Callable[[], Awaitable[None] | None]


class RedisMissing(RuntimeError):
    """``state.backend: redis`` without the ``redis`` extra installed."""


def require_client() -> None:
    """Fail at start-up, naming the extra, when the client library is absent."""
    global aioredis, RedisError
    if aioredis is _NOT_LOADED:
        try:
            import redis.asyncio as client
            from redis.exceptions import RedisError as client_error
        except ImportError:  # pragma: no cover - exercised by the start-up check
            aioredis = None
        else:
            aioredis, RedisError = client, client_error
    if aioredis is None:
        raise RedisMissing(MISSING_EXTRA)


class RedisLink:
    def __init__(self, settings: StateSettings) -> None:
        require_client()
        self.settings = settings
        self.prefix = settings.key_prefix
        self.ready = False
        self.last_error = ""  # why Redis last failed (logged; never holds the password)
        # No socket_timeout: every use of the client runs under its own
        # deadline (call, the probe, the listener), and the library's write
        # timeout wraps each command's send in a task of its own (~20 us of
        # CPU per call, a fifth of a lease acquire).
        self.client = aioredis.from_url(
            settings.redis_url, socket_timeout=None,
            socket_connect_timeout=CALL_TIMEOUT, health_check_interval=5,
            decode_responses=False)
        self._handlers: dict[str, list[Handler]] = {}
        self._on_up: list[Hook] = []
        self._on_down: list[Hook] = []
        self._on_subscribed: list[Hook] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        # Pub/sub ignores the database number: without it in the channel
        # names, two deployments on one Redis in different databases (same
        # key prefix) would hear each other's notices.
        db = int(self.client.connection_pool.connection_kwargs.get("db") or 0)
        self._channel_suffix = f"@db{db}" if db else ""

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def channel(self, *parts: str) -> str:
        """A pub/sub channel name, private to this key prefix and database."""
        return self.key(*parts) + self._channel_suffix

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Connect (an unreachable Redis is not fatal: not ready until it answers)."""
        await self._probe()
        if not self.ready:
            log.warning("redis at %s is unreachable (%s); not ready until it answers",
                        masked_url(self.settings.redis_url), self.last_error)
        self._tasks = [asyncio.create_task(self._watch(), name="ds2proxy-redis-watch"),
                       asyncio.create_task(self._listen(), name="ds2proxy-redis-listen")]

    async def close(self) -> None:
        self.ready = False  # closing is not an outage: nothing more to report
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.client.aclose()

    def on_up(self, hook: Hook) -> None:
        """``hook()`` runs each time Redis answers again after being unreachable."""
        self._on_up.append(hook)

    def on_down(self, hook: Hook) -> None:
        self._on_down.append(hook)

    def on_subscribed(self, hook: Hook) -> None:
        """``hook()`` runs each time the listener has (re)subscribed on a new
        connection: a notice published while it had none was not heard."""
        self._on_subscribed.append(hook)

    def subscribe(self, channel: str, handler: Handler) -> None:
        """``handler(payload)`` for every message on ``channel`` (a full key)."""
        self._handlers.setdefault(channel, []).append(handler)
        self._subscribed.set()

    # -- calls -------------------------------------------------------------------------

    async def call(self, make: Callable[[], Awaitable[T]], *, timeout: float | None = None,
                   check: bool = True) -> T:
        """Run one Redis command (``make()``) under a deadline; StateUnavailable
        when Redis is known down, times out, or the connection fails."""
        if check and not self.ready:
            raise StateUnavailable()
        try:
            async with asyncio.timeout(timeout or CALL_TIMEOUT):
                return await make()
        except (TimeoutError, RedisError, OSError) as exc:
            await self._mark_down(exc)
            raise StateUnavailable() from None

    async def publish(self, channel: str, payload: str) -> None:
        await self.call(lambda: self.client.publish(channel, payload))

    # -- the watchdog and the listener ---------------------------------------------

    async def _probe(self) -> None:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await self.client.ping()
        except (TimeoutError, RedisError, OSError) as exc:
            await self._mark_down(exc)
            return
        if not self.ready:
            self.ready = True
            log.info("redis at %s is reachable", masked_url(self.settings.redis_url))
            await _run_hooks(self._on_up)

    async def _mark_down(self, exc: BaseException) -> None:
        self.last_error = self._reason(exc)
        if self.ready:
            self.ready = False
            log.warning("redis became unreachable (%s); answering 503 until it is back",
                        self.last_error)
            await _run_hooks(self._on_down)

    def _reason(self, exc: BaseException) -> str:
        """Why a call failed, for the log (a refused password says so): never
        the command's arguments (a pipeline's error quotes them: records, rows),
        never the URL's password."""
        message = str(exc).rpartition(PIPELINE_ERROR)[2][:MAX_REASON]
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        password = self.client.connection_pool.connection_kwargs.get("password")
        return text.replace(password, "…") if password else text

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY)
            await self._probe()

    async def _listen(self) -> None:
        """Deliver pub/sub messages; reconnect and resubscribe after a failure.
        A dropped subscription alone (killed by Redis's pub/sub buffer limit,
        CLIENT KILL, a proxy's idle timeout) is not an outage: the link is
        marked down only when Redis does not answer a ping either."""
        await self._subscribed.wait()
        failing = False  # the last connection failed before it subscribed
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            subscribed: set[str] = set()
            try:
                while True:
                    if missing := set(self._handlers) - subscribed:  # added since
                        async with asyncio.timeout(CALL_TIMEOUT):
                            await pubsub.subscribe(*missing)
                        fresh, failing = not subscribed, False
                        subscribed |= missing
                        if fresh:  # a new connection: catch up on what was missed
                            await _run_hooks(self._on_subscribed)
                    message = await pubsub.get_message(timeout=PING_EVERY)
                    if message is not None:
                        self._dispatch(message)
            except (TimeoutError, RedisError, OSError) as exc:
                if not failing:
                    log.warning("redis pub/sub subscription lost (%s); subscribing again",
                                self._reason(exc))
                await self._probe()
                if failing or not self.ready:  # at once the first time, then paced
                    await asyncio.sleep(PING_EVERY / 2)
                failing = True
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = _text(message.get("channel"))
        payload = _text(message.get("data"))
        for handler in self._handlers.get(channel, ()):
            try:
                handler(payload)
            except Exception:  # a handler's bug must not stop delivery to the others
                log.exception("redis message handler failed on %s", channel)


async def gather_writes(now: asyncio.Event) -> None:
    """Wait ``GATHER_SECONDS`` for more writes to join a batch, or until
    ``now`` is set (someone waits for the writes to land)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(GATHER_SECONDS):
            await now.wait()


async def _run_hooks(hooks: list[Hook]) -> None:
    for hook in hooks:
        try:
            result = hook()
            if asyncio.iscoroutine(result):
                await result
        except StateUnavailable:
            continue  # down again already; the next hook may not need Redis
        except Exception:
            log.exception("redis state hook failed")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
