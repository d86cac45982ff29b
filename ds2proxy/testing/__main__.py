"""Run the fake DeepSeek upstream on its own: ``python -m ds2proxy.testing --port 5002``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from .server import DEFAULT_DIFFICULTY, FakeDeepSeek
from .state import FakeAccount

DEMO_ACCOUNT = "demo@example.com:demo"


def parse_account(spec: str) -> FakeAccount:
    """``EMAIL:PASSWORD`` or ``MOBILE:PASSWORD``."""
    identity, sep, password = spec.partition(":")
    if not sep or not identity or not password:
        raise argparse.ArgumentTypeError(f"expected IDENTITY:PASSWORD, got {spec!r}")
    if "@" in identity:
        return FakeAccount(password, email=identity)
    return FakeAccount(password, mobile=identity)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ds2proxy.testing",
                                     description="Serve a fake chat.deepseek.com for demos and"
                                                 " tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--account", action="append", type=parse_account, default=[],
                        metavar="IDENTITY:PASSWORD",
                        help=f"a user that can log in (repeatable; default {DEMO_ACCOUNT})")
    parser.add_argument("--difficulty", type=int, default=DEFAULT_DIFFICULTY,
                        help="PoW difficulty of issued challenges")
    parser.add_argument("--min-client-version", default=None,
                        help="refuse older x-client-version values with code 40005")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                        help="delay before answering each call (a simulated round trip)")
    return parser


async def serve(args: argparse.Namespace) -> None:
    fake = FakeDeepSeek(args.account or [parse_account(DEMO_ACCOUNT)],
                        difficulty=args.difficulty, min_client_version=args.min_client_version,
                        latency=args.latency)
    url = await fake.start(args.host, args.port)
    print(f"fake DeepSeek upstream on {url} (accounts: {', '.join(fake.accounts)})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.close()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
