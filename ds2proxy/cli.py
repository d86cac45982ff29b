"""Command line: ``python -m ds2proxy [--config PATH] [--host H] [--port P] [--demo]``;
``python -m ds2proxy config-docs [PATH]`` writes the configuration reference.

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

from .admin.credentials import AdminCredentials
from .app import STREAM_GRACE_SECONDS, create_app, end_streams_now, start_server
from . import heap, logfmt
from .config import ConfigError
from .config_store import DEMO, ConfigStore
from .observe_settings import LOG_FORMATS
from .loopback import is_loopback_host
from .pow.solver import default_solver
from .state.redis_link import REDIS_TIMEOUT_ENV, RedisMissing, env_call_timeout

log = logging.getLogger("ds2proxy")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEMO_KEY = "demo-key"
DEMO_ACCOUNT = {"email": "demo@example.com", "password": "demo-password"}
ALLOW_DEFAULT_KEY_FLAG = "--allow-default-admin-key-on-network"
DEFAULT_PORT = "5001"
# Each stops the server gently. SIGHUP too (a closed terminal or SSH session):
# by default it killed the process mid-request, usage rows unwritten.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))

DESCRIPTION = ("Serve the OpenAI, Anthropic, Gemini and Ollama APIs (and the plugins' own)\n"
               "from DeepSeek web-chat accounts.")
EPILOG = f"""\
ds2proxy config-docs [PATH] writes the configuration reference (every config
field, its default and range) to PATH or standard output.

environment:
  DS2PROXY_ADMIN_KEY    the admin key (default: 'admin', loopback only)
  DS2PROXY_CONFIG, DS2PROXY_HOST, DS2PROXY_PORT, DS2PROXY_LOG_LEVEL,
  DS2PROXY_LOG_FORMAT   defaults for the flags above (blank counts as unset)
  {REDIS_TIMEOUT_ENV}  seconds each call to a shared Redis may take

exit status: 0 stopped by a signal, 1 cannot listen, 2 bad flag, environment
value or config."""


class UnsafeListen(Exception):
    """Refusing to serve the default admin key beyond this machine."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ds2proxy", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config file (default: $DS2PROXY_CONFIG or ./config.json)")
    parser.add_argument("--host", default=_env("DS2PROXY_HOST") or "127.0.0.1",
                        help="address to listen on (default: $DS2PROXY_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=port_number, metavar="PORT",
                        help="0-65535, 0 picks a free one (default: $DS2PROXY_PORT or 5001)")
    parser.add_argument("--demo", action="store_true",
                        help="serve from a bundled fake DeepSeek upstream (offline demo)")
    parser.add_argument("--log-level", type=log_level, choices=LOG_LEVELS, metavar="LEVEL",
                        default=log_level(_env("DS2PROXY_LOG_LEVEL") or "INFO"),
                        help=f"one of {', '.join(LOG_LEVELS)} (default: $DS2PROXY_LOG_LEVEL "
                             "or INFO)")
    parser.add_argument("--log-format", type=str.lower, choices=LOG_FORMATS,
                        default=_env("DS2PROXY_LOG_FORMAT").lower() or None,
                        help="text (default) or json: one JSON object per line, one per "
                             "request end (overrides the config's log.format)")
    parser.add_argument(ALLOW_DEFAULT_KEY_FLAG, dest="allow_default_key", action="store_true",
                        help="listen on a non-loopback address even though the admin key "
                             "is still the default 'admin' (anyone who can reach it can "
                             "administer it)")
    args = parser.parse_args(argv)
    if args.demo and args.config is not None:
        parser.error("--demo serves its own built-in config; --config is not read with it")
    _check_environment(parser, args)
    args.host = listen_host(args.host)
    return args


def _check_environment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Defaults from the environment skip argparse's checks: they are made
    here alike, a bad value a usage error naming its variable."""
    if args.log_level not in LOG_LEVELS:
        parser.error(f"DS2PROXY_LOG_LEVEL: invalid level {args.log_level!r} "
                     f"(choose from {', '.join(LOG_LEVELS)})")
    if args.log_format is not None and args.log_format not in LOG_FORMATS:
        parser.error(f"DS2PROXY_LOG_FORMAT: invalid format {args.log_format!r} "
                     f"(choose from {', '.join(LOG_FORMATS)})")
    try:
        env_call_timeout()
    except ValueError as exc:
        parser.error(f"{REDIS_TIMEOUT_ENV}: {exc}")
    if args.port is None:
        try:
            args.port = port_number(_env("DS2PROXY_PORT") or DEFAULT_PORT)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"DS2PROXY_PORT: {exc}")


def log_level(value: str) -> str:
    """A level's name in capitals, the spellings Python's logging also takes
    (``warn``, ``fatal``) read as the level they stand for."""
    name = value.strip().upper()
    return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)


def _env(name: str) -> str:
    """A variable's value; blank counts as unset (``DS2PROXY_HOST=`` in a compose
    file must not mean every interface)."""
    return os.environ.get(name, "").strip()


def listen_host(text: str) -> str:
    """An address as the socket takes it: ``[::1]``, as URLs write it, is ``::1``."""
    host = text.strip()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def port_number(text: str) -> int:
    """A TCP port as the command line or the environment gives it."""
    try:
        port = int(text.strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not between 0 and 65535")
    return port


async def _demo_store() -> tuple[ConfigStore, object]:
    from .testing import FakeAccount, FakeDeepSeek

    fake = FakeDeepSeek([FakeAccount(DEMO_ACCOUNT["password"], email=DEMO_ACCOUNT["email"])],
                        difficulty=2000)
    base_url = await fake.start()
    store = ConfigStore({"keys": [DEMO_KEY], "accounts": [dict(DEMO_ACCOUNT)],
                         "upstream": {"base_url": base_url},
                         "embeddings": {"provider": "testing"}}, source=DEMO)
    return store, fake


async def run(args: argparse.Namespace) -> None:
    fake = None
    if args.demo:
        store, fake = await _demo_store()
    else:
        store = ConfigStore.from_sources(args.config)
    if args.log_format is None and store.config.log.format != "text":
        logfmt.configure(store.config.log.format, args.log_level)
    try:
        await _serve(args, store)
    finally:
        if fake is not None:
            await fake.close()


async def _serve(args: argparse.Namespace, store: ConfigStore) -> None:
    admin_key = os.environ.get("DS2PROXY_ADMIN_KEY")
    _check_exposure(args, store, admin_key)
    await asyncio.to_thread(default_solver)  # logs which PoW solver runs, and its speed
    app = create_app(store, admin_key=admin_key)
    server = await start_server(app, args.host, args.port)
    heap.freeze_startup()  # what start-up built lives for good
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:  # before the start is announced: a signal sent on it is ours
        loop.add_signal_handler(sig, stop.set)
    log.info("ds2proxy listening on %s", server.url)
    log.info("dashboard: %s/admin/", _browser_url(args.host, server.port))
    log.info("config: %s", store.describe())
    if args.demo:
        log.info("demo mode: API key %r, fake upstream at %s", DEMO_KEY,
                 store.config.upstream.base_url)
    try:
        await stop.wait()
        log.info("shutting down: requests in flight may finish (streams for up to %g s); "
                 "signal again to end them now", STREAM_GRACE_SECONDS)
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, end_streams_now, app)
    finally:
        await server.close()


def _check_exposure(args: argparse.Namespace, store: ConfigStore, admin_key: str | None
                    ) -> None:
    """The default admin key stays on loopback unless the operator says otherwise."""
    if is_loopback_host(args.host) or args.allow_default_key:
        return
    if not AdminCredentials(store, admin_key).default_key_in_use:
        return
    raise UnsafeListen(
        f"refusing to listen on {args.host or 'every address'}: the admin key is still the "
        "default 'admin', so anyone who can reach this server could administer it and read "
        "every account password and token. Set a key first, e.g.\n"
        "    DS2PROXY_ADMIN_KEY=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\""
        f" ds2proxy --host {args.host}\n"
        "or set a password on the dashboard's settings page while listening on 127.0.0.1. "
        f"To accept the risk anyway, pass {ALLOW_DEFAULT_KEY_FLAG}.")


def _browser_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches the server (wildcards mean loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def config_docs(argv: list[str]) -> int:
    """``config-docs [PATH]``: write the configuration reference (stdout without PATH)."""
    from .config_docs import render

    parser = argparse.ArgumentParser(prog="ds2proxy config-docs",
                                     description="Write the configuration reference.")
    parser.add_argument("path", nargs="?", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    text = render()
    if args.path is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        print(f"ds2proxy config-docs: cannot write {args.path}: "
              f"{exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["config-docs"]:
        return config_docs(argv[1:])
    heap.limit_arenas()  # before any thread starts
    args = parse_args(argv)
    logfmt.configure(args.log_format or "text", args.log_level)
    try:
        asyncio.run(run(args))
    except (ConfigError, UnsafeListen, RedisMissing) as exc:
        print(f"ds2proxy: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ds2proxy: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
