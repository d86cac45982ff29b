"""The command line as an operator meets it: every bad flag, environment
value or config file is one line naming what to fix and a non-zero exit,
never a traceback or a message about something else."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from ds2proxy.testing import Delivery, FakeDeepSeek, Scripted
from ds2proxy.testing.pytest_plugin import TEST_KEY, base_config

pytestmark = pytest.mark.timeout(120)


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m ds2proxy`` run to its end (these all stop before serving)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DS2PROXY_")}
    return subprocess.run([sys.executable, "-m", "ds2proxy", *args], cwd=cwd,
                          env={**clean, **env}, capture_output=True, text=True, timeout=100)


def refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


@pytest.mark.parametrize("env, needle", [
    ({"DS2PROXY_PORT": "abc"}, "DS2PROXY_PORT: 'abc' is not a port number"),
    ({"DS2PROXY_PORT": "70000"}, "DS2PROXY_PORT: port 70000 is not between 0 and 65535"),
    ({"DS2PROXY_LOG_FORMAT": "xml"}, "DS2PROXY_LOG_FORMAT: invalid format 'xml'"),
    ({"DS2PROXY_REDIS_TIMEOUT": "2s"}, "DS2PROXY_REDIS_TIMEOUT: '2s' is not a number"),
    ({"DS2PROXY_REDIS_TIMEOUT": "nan"}, "DS2PROXY_REDIS_TIMEOUT: must be between 0.01 and 600"),
    ({"DS2PROXY_REDIS_TIMEOUT": "0"}, "DS2PROXY_REDIS_TIMEOUT: must be between 0.01 and 600"),
])
def test_a_bad_environment_value_is_a_usage_error_naming_the_variable(
        tmp_path: Path, env: dict[str, str], needle: str) -> None:
    refused(run_cli("--demo", cwd=tmp_path, **env), needle)


@pytest.mark.parametrize("port", ["-1", "65536", "99999"])
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, port: str) -> None:
    refused(run_cli("--demo", "--port", port, cwd=tmp_path),
            f"argument --port: port {int(port)} is not between 0 and 65535")


def test_log_format_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from ds2proxy.cli import parse_args

    assert parse_args(["--log-format", "JSON"]).log_format == "json"
    monkeypatch.setenv("DS2PROXY_LOG_FORMAT", "Json")
    assert parse_args([]).log_format == "json"


def test_a_config_path_that_cannot_be_read_is_named_as_the_config(tmp_path: Path) -> None:
    """A folder (or a file it may not read) given as the config used to be
    reported as 'cannot listen on 127.0.0.1:5001', sending the operator to
    look for whatever held the port."""
    (tmp_path / "conf.d").mkdir()
    done = run_cli("--config", "conf.d", "--port", "0", cwd=tmp_path)
    refused(done, "conf.d cannot be read: Is a directory")
    assert "listen" not in done.stderr


def test_help_says_what_the_server_is_its_environment_and_exit_codes(tmp_path: Path) -> None:
    """--help's description was a fragment of the module docstring
    ("Command line: ``python -m ds2proxy [--config PATH] …``;"), and it
    named neither DS2PROXY_ADMIN_KEY, which the refusal to listen asks for,
    nor the exit codes scripts test."""
    done = run_cli("--help", cwd=tmp_path)
    assert done.returncode == 0 and "``" not in done.stdout
    assert "from DeepSeek web-chat accounts." in done.stdout
    for needle in ("DS2PROXY_ADMIN_KEY", "DS2PROXY_PORT", "DS2PROXY_REDIS_TIMEOUT",
                   "1 cannot listen", "2 bad flag"):
        assert needle in done.stdout, needle
    assert max(len(line) for line in done.stdout.splitlines()) <= 100


def test_config_docs_takes_help_and_reports_a_path_it_cannot_write(tmp_path: Path) -> None:
    """``config-docs --help`` used to write the reference into a file named
    '--help'; a path in a missing folder was a FileNotFoundError traceback."""
    done = run_cli("--help", cwd=tmp_path)
    assert done.returncode == 0 and "ds2proxy config-docs [PATH]" in done.stdout
    done = run_cli("config-docs", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "usage: ds2proxy config-docs" in done.stdout
    assert list(tmp_path.iterdir()) == []
    done = run_cli("config-docs", str(tmp_path / "no" / "such.md"), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot write" in done.stderr and "No such file or directory" in done.stderr
    done = run_cli("config-docs", "reference.md", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reference.md").read_text().startswith("#")


async def test_an_ipv6_host_is_served_and_named_with_brackets() -> None:
    """``--host ::1`` logged 'listening on http://::1:5001', a URL no client
    can use (the port reads as part of the address)."""
    from ds2proxy.app import create_app, start_server
    from ds2proxy.config_store import ConfigStore

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    server = await start_server(create_app(ConfigStore({})), "::1", 0)
    try:
        assert server.url == f"http://[::1]:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/healthz") as resp:
                assert resp.status == 200
    finally:
        await server.close()


async def test_a_second_interrupt_ends_the_streams_grace_at_once(
        tmp_path: Path, fake_upstream: FakeDeepSeek) -> None:
    """The first Ctrl-C lets streams run on for 50 s; a second one did
    nothing, so an operator waited or killed the process (its usage rows and
    leases unwritten). It now ends the streams in-band and the server exits."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(base_config(fake_upstream)))
    fake_upstream.enqueue(Scripted(answer="word " * 4000, chunk_size=5,
                                   delivery=Delivery(chunk_delay=0.05)))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ds2proxy", "--config", str(config), "--port", str(port),
        cwd=tmp_path, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    assert proc.stderr is not None
    try:
        await asyncio.wait_for(read_until(proc.stderr, "listening on"), 60)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                 headers={"Authorization": f"Bearer {TEST_KEY}"},
                                 json={"model": "deepseek-chat", "stream": True,
                                       "messages": [{"role": "user", "content": "hi"}]}
                                 ) as resp:
                assert b"word" in await resp.content.readuntil(b"\n\n")
                proc.send_signal(signal.SIGINT)
                await asyncio.wait_for(read_until(proc.stderr, "signal again"), 30)
                proc.send_signal(signal.SIGINT)
                rest = (await asyncio.wait_for(resp.content.read(), 30)).decode()
        assert "server_shutting_down" in rest and rest.rstrip().endswith("data: [DONE]")
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_until(stream: asyncio.StreamReader, needle: str) -> None:
    """Read the server's log until a line holds ``needle``."""
    while needle not in (line := (await stream.readline()).decode()):
        assert line, f"the log ended before {needle!r}"


def test_blank_environment_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """DS2PROXY_HOST= (a compose file's way of leaving it out) listened on
    every interface, since aiohttp reads an empty host so; a blank log level
    was refused as invalid. Blank is unset, as for DS2PROXY_ADMIN_KEY."""
    from ds2proxy.cli import parse_args

    for name in ("DS2PROXY_HOST", "DS2PROXY_PORT", "DS2PROXY_LOG_LEVEL", "DS2PROXY_LOG_FORMAT"):
        monkeypatch.setenv(name, " ")
    args = parse_args([])
    assert (args.host, args.port, args.log_level, args.log_format) == (
        "127.0.0.1", 5001, "INFO", None)
    monkeypatch.setenv("DS2PROXY_HOST", " ::1 ")
    assert parse_args([]).host == "::1"


def test_a_bracketed_ipv6_host_is_taken_as_written_in_urls() -> None:
    """``--host [::1]`` (the address as a URL writes it) was passed on with its
    brackets and refused: 'cannot listen on [::1]:5001: Name or service not known'."""
    from ds2proxy.cli import parse_args

    assert parse_args(["--host", "[::1]"]).host == "::1"
    assert parse_args(["--host", "[::]"]).host == "::"


async def test_a_hangup_stops_the_server_gently() -> None:
    """SIGHUP (the terminal or SSH session that started it closed) killed the
    process outright, requests and usage rows with it; it now shuts down as
    SIGTERM does and exits 0."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ds2proxy", "--demo", "--port", str(port),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    assert proc.stderr is not None
    try:
        await asyncio.wait_for(read_until(proc.stderr, "listening on"), 60)
        proc.send_signal(signal.SIGHUP)
        await asyncio.wait_for(read_until(proc.stderr, "shutting down"), 30)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_log_levels_take_the_spellings_python_logging_takes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """DS2PROXY_LOG_LEVEL=warn (logging's own alias) was refused as invalid."""
    from ds2proxy.cli import parse_args

    monkeypatch.setenv("DS2PROXY_LOG_LEVEL", "warn")
    assert parse_args([]).log_level == "WARNING"
    assert parse_args(["--log-level", "Fatal"]).log_level == "CRITICAL"


def test_demo_with_a_config_file_is_a_usage_error(tmp_path: Path) -> None:
    """``--demo --config my.json`` served the demo and never read my.json,
    without a word: the operator believed their config was in use."""
    (tmp_path / "my.json").write_text("{}")
    refused(run_cli("--demo", "--config", "my.json", cwd=tmp_path),
            "--demo serves its own built-in config")
