"""Command line: ``python -m ds2proxy [--config PATH] [--host H] [--port P] [--demo]``.

``--demo`` starts the bundled fake DeepSeek upstream in the same process and
points the proxy at it, with one demo account and the API key ``demo-key``,
so every route can be tried offline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from .app import create_app, start_server
from .config import ConfigError, ConfigStore
from .pow.solver import default_solver

log = logging.getLogger("ds2proxy")

DEMO_KEY = "demo-key"
DEMO_ACCOUNT = {"email": "demo@example.com", "password": "demo-password"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ds2proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: $DS2PROXY_CONFIG or ./config.json)")
    parser.add_argument("--host", default=os.environ.get("DS2PROXY_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DS2PROXY_PORT", "5001")))
    parser.add_argument("--demo", action="store_true",
                        help="serve from a bundled fake DeepSeek upstream (offline demo)")
    parser.add_argument("--log-level", default=os.environ.get("DS2PROXY_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


async def _demo_store() -> tuple[ConfigStore, object]:
    from .testing import FakeAccount, FakeDeepSeek

    fake = FakeDeepSeek([FakeAccount(DEMO_ACCOUNT["password"], email=DEMO_ACCOUNT["email"])],
                        difficulty=2000)
    base_url = await fake.start()
    store = ConfigStore({"keys": [DEMO_KEY], "accounts": [dict(DEMO_ACCOUNT)],
                         "upstream": {"base_url": base_url},
                         "embeddings": {"provider": "deterministic"}})
    return store, fake


async def run(args: argparse.Namespace) -> None:
    fake = None
    if args.demo:
        store, fake = await _demo_store()
    else:
        store = ConfigStore.from_sources(args.config)
    admin_key = os.environ.get("DS2PROXY_ADMIN_KEY")
    await asyncio.to_thread(default_solver)  # logs which PoW solver runs, and its speed
    app = create_app(store, admin_key=admin_key)
    server = await start_server(app, args.host, args.port)
    log.info("ds2proxy listening on %s", server.url)
    if args.demo:
        log.info("demo mode: API key %r, fake upstream at %s", DEMO_KEY,
                 store.config.upstream.base_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
        if fake is not None:
            await fake.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(args))
    except ConfigError as exc:
        print(f"ds2proxy: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ds2proxy: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
