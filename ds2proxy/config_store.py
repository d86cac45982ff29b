"""The live config: where it came from, and the one way to change it.

Every write goes through :meth:`ConfigStore.update`. It runs as a task of its
own that the caller awaits through :func:`asyncio.shield`, so a write, once
begun, always finishes (file and memory together) even when the client that
asked for it disconnects and its handler is cancelled. The task holds the
store's lock from the mutation to the listeners, so writes are serialised end
to end, and it returns only after the file is fsync'd: an acknowledged write
is on disk.

With a shared store (``shared``, see :mod:`ds2proxy.state.shared_config`)
the document of record is the cluster's: a write re-reads it, applies the
mutation and commits on its version (retrying on a concurrent write), and
changes other instances made arrive through :meth:`ConfigStore.adopt`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import operator
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

from .config import Config, ConfigError, parse_config
from .config_fields import load_warnings
from .config_leftovers import temp_prefix, written_file
from .doc_merge import copy_tree
from .keyring import migrate_keys
from .private_files import make_private
from .state.errors import StateUnavailable

log = logging.getLogger("ds2proxy.config")

DEFAULT_PATH = Path("config.json")
UTF8_BOM = b"\xef\xbb\xbf"

# Where the running config came from (ConfigStore.source).
FILE = "file"  # a config file, written back on every change
ENVIRONMENT = "environment"  # DS2PROXY_CONFIG_JSON: changes stay in memory
DEMO = "demo"  # --demo: built in, changes stay in memory
NONE = "none"  # no config at all: the first admin change creates the file
MEMORY = "memory"  # built by code (tests, benchmarks): changes stay in memory


def decode_env_json(value: str, where: str = "DS2PROXY_CONFIG_JSON") -> dict:
    """``DS2PROXY_CONFIG_JSON``: raw JSON, or base64 of it."""
    text = value.strip().removeprefix("\ufeff")
    if not text.startswith(("{", "[")):
        try:
            text = base64.b64decode(text, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(where, "neither JSON nor base64 of JSON") from exc
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(where, f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                                 f"{exc.msg}") from exc


def load_file(path: Path) -> dict:
    """The config file's document; a UTF-8 byte order mark (Windows editors
    write one) is skipped, as in ``DS2PROXY_CONFIG_JSON``."""
    try:
        return orjson.loads(path.read_bytes().removeprefix(UTF8_BOM))
    except FileNotFoundError as exc:
        raise ConfigError("(file)", f"{path} does not exist") from exc
    except OSError as exc:  # a folder, no permission, an I/O error: not a port problem
        raise ConfigError("(file)", f"{path} cannot be read: "
                                    f"{exc.strerror or type(exc).__name__}") from exc
    except orjson.JSONDecodeError as exc:
        raise ConfigError("(file)", f"{path} is not valid JSON (line {exc.lineno}, column "
                                    f"{exc.colno}): {exc.msg}") from exc


def atomic_write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename: never
    half-written. A ``path`` that is a symbolic link is written through: the
    file it names is replaced, the link stays."""
    payload = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
    path = written_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        make_private(Path(tmp), path)  # 0600, the replaced file's owner
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable. The new file is already the config by now, so
    a folder the file system will not sync (EINVAL on some network and FUSE
    mounts) is a warning: reporting the write as failed would leave memory
    behind the file, which the next start reads."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        log.warning("the config folder could not be synced (%s); the change is written but "
                    "may not survive a power loss", exc.strerror or type(exc).__name__)


Stamp = tuple[int, int, int]


def file_stamp(path: Path) -> Stamp | None:
    """What tells one version of the file from another (None: no file)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def keep_aside(path: Path) -> Path:
    """Copy ``path`` beside itself under a dated name (as private as the
    config: it holds the same secrets); returns the copy's path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside, n = path.with_name(f"{path.name}.outside-edit-{stamp}"), 1
    while True:  # never over an earlier copy made in the same second
        try:
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            n += 1
            aside = path.with_name(f"{path.name}.outside-edit-{stamp}-{n}")
    with os.fdopen(fd, "wb") as fh:
        fh.write(path.read_bytes())
    return aside


Listener = Callable[[Config], None]
Mutation = Callable[[dict], Any]
# A check of a whole candidate document; raises ConfigError to refuse it.
Check = Callable[[dict], None]

CAS_ATTEMPTS = 50


class SharedDocument(Protocol):
    async def load(self) -> tuple[int, dict | None]: ...
    async def commit(self, expected: int, data: dict) -> int: ...


class ConfigStore:
    """The current typed view, serialised atomic updates, listeners.

    ``source`` says where the config came from (see the constants above);
    ``path`` is where changes are written, or None when they stay in memory.
    """

    def __init__(self, data: dict, path: Path | None = None, *, source: str = "") -> None:
        self._config = parse_config(data)
        self._data = copy_tree(data)
        self.path = path
        self.source = source or (FILE if path is not None else MEMORY)
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._checks: list[Check] = []
        self._writes: set[asyncio.Task[Config]] = set()
        self._warned_memory_only = False
        self.shared: SharedDocument | None = None
        self.version = 0  # of the shared document this view reflects
        # The file as this server last read or wrote it (see _edited_outside).
        self._stamp = file_stamp(path) if path is not None and self.source == FILE else None

    @classmethod
    def from_sources(cls, path: str | None = None, env: dict[str, str] | None = None) -> ConfigStore:
        """``--config`` beats ``DS2PROXY_CONFIG``; ``DS2PROXY_CONFIG_JSON`` (or
        ``DS2API_CONFIG_JSON``) beats both files; else ``./config.json`` when
        present; else an empty config that the first admin change saves there."""
        env = os.environ if env is None else env
        # A blank variable counts as unset, as the command line's do.
        raw_env = (env.get("DS2PROXY_CONFIG_JSON", "").strip()
                   or env.get("DS2API_CONFIG_JSON", "").strip())
        file_path = path or env.get("DS2PROXY_CONFIG", "").strip()
        if raw_env:
            data = decode_env_json(raw_env)
            _warn_unknown(data, "DS2PROXY_CONFIG_JSON")
            return cls(data, Path(file_path) if file_path else None, source=ENVIRONMENT)
        target = Path(file_path) if file_path else DEFAULT_PATH
        if file_path or target.exists():
            data = load_file(target)
            _warn_unknown(data, str(target))
            return cls(data, target, source=FILE)
        return cls({}, DEFAULT_PATH, source=NONE)

    @property
    def config(self) -> Config:
        return self._config

    def describe(self) -> str:
        """One honest sentence on where the config lives (start-up log, dashboard)."""
        if self.source == FILE:
            return f"config file {self.path}"
        if self.source == ENVIRONMENT:
            saved = f"changes are saved to {self.path}" if self.path else \
                "changes apply in memory only"
            return f"DS2PROXY_CONFIG_JSON from the environment ({saved})"
        if self.source == DEMO:
            return "the built-in demo config (changes apply in memory only)"
        if self.source == NONE:
            return (f"no config file: running with an empty config; the first admin change "
                    f"creates {self.path}")
        return "a config built in memory (changes are not saved)"

    def snapshot(self) -> dict:
        """A deep copy of the raw document (for export and admin reads)."""
        return copy_tree(self._data)

    def snapshot_of(self, *names: str) -> dict:
        """A deep copy of only the top-level fields named (those present):
        a reader of one section need not copy thousands of accounts."""
        return {name: copy_tree(self._data[name]) for name in names if name in self._data}

    def current(self) -> dict:
        """The live raw document itself, for reads that only look at it (an
        ETag, an export): never change it. A write replaces it whole, so a
        reference held stays one consistent version."""
        return self._data

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_check(self, check: Check) -> None:
        """Run ``check(document)`` on every write before it is saved (plugins
        validate their own ``plugins.<name>`` settings this way)."""
        self._checks.append(check)

    async def update(self, mutate: Mutation, *, creates_file: bool = True) -> Config:
        """Apply ``mutate`` to a copy of the document, validate, persist, publish.

        The write runs to completion even if the caller is cancelled; a
        mutation that raises (or fails validation) changes nothing. With no
        config file yet, ``creates_file`` says whether this change creates it
        (the admin's changes do; the server's own bookkeeping does not).
        """
        task = asyncio.get_running_loop().create_task(self._write(mutate, creates_file))
        self._writes.add(task)
        task.add_done_callback(self._forget)
        return await asyncio.shield(task)

    def _forget(self, task: asyncio.Task[Config]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Seen by the caller unless it went away; then this retrieves it.
            log.debug("config write refused (%s)", type(task.exception()).__name__)

    async def settled(self) -> None:
        """Wait for every write already begun (shutdown, tests)."""
        while self._writes:
            await asyncio.wait(set(self._writes))

    async def _write(self, mutate: Mutation, creates_file: bool) -> Config:
        async with self._lock:
            if self.shared is not None:
                data, config = await self._commit_shared(mutate)
                self._publish(data, config)
                await self._keep_local_copy(data, creates_file)
                return config
            base = await self._edited_outside() or self._data
            # Copy, edit, validate: linear in the config's size (about 50 ms
            # at 4,000 accounts), so in a worker thread; the lock keeps
            # writes serialised meanwhile.
            data, config = await asyncio.to_thread(_apply, mutate, base, self._checks)
            await self._persist(data, creates_file)
            self._publish(data, config)
            return config

    async def _edited_outside(self) -> dict | None:
        """The file's document when something else changed it since this
        server last read or wrote it (an operator's editor), so that the
        write is applied on top of that edit instead of silently undoing it.
        An edit that is not a valid config is kept aside under a dated name
        and replaced, never lost."""
        if self.source != FILE or self.path is None:
            return None
        stamp = await asyncio.to_thread(file_stamp, self.path)
        if stamp is None or stamp == self._stamp:
            return None
        try:
            data = await asyncio.to_thread(load_file, self.path)
            await asyncio.to_thread(parse_config, data)
        except ConfigError as exc:
            aside = await asyncio.to_thread(keep_aside, self.path)
            log.warning("config file %s was changed outside the server and is not a valid "
                        "config (%s); it is kept as %s and replaced", self.path,
                        str(exc).removeprefix("config field '(file)': "), aside.name)
            return None
        log.warning("config file %s was changed outside the server; that edit is kept and "
                    "applied with this change", self.path)
        return data

    async def _commit_shared(self, mutate: Mutation) -> tuple[dict, Config]:
        """Apply ``mutate`` to the newest shared document; on a concurrent
        write, re-apply it to the one that won and try again."""
        for _ in range(CAS_ATTEMPTS):
            version, current = await self.shared.load()
            data, config = await asyncio.to_thread(
                _apply, mutate, current if current is not None else self._data, self._checks)
            committed = await self.shared.commit(version, data)
            if committed:
                self.version = committed
                return data, config
        raise StateUnavailable("the shared config kept changing; try again", retry_after=1)

    async def adopt(self, version: int, data: dict) -> None:
        """A newer shared document written by another instance."""
        async with self._lock:
            if version <= self.version:
                return
            self.version = version  # a bad version is reported once, then skipped
            try:
                config = await asyncio.to_thread(parse_config, data)
            except ConfigError as exc:
                log.error("shared config version %d is not valid (%s); keeping the "
                          "current one", version, exc)
                return
            if await asyncio.to_thread(operator.eq, data, self._data):
                return
            self._publish(data, config)
            await self._keep_local_copy(data)
            log.info("applied config version %d from the shared store", version)

    def _publish(self, data: dict, config: Config) -> None:
        self._data, self._config = data, config
        for listener in self._listeners:
            listener(config)

    async def _keep_local_copy(self, data: dict, creates_file: bool = False) -> None:
        """With a shared config the file is this instance's copy of a version
        the cluster already holds: failing to write it undoes nothing and
        must not keep the version out of memory (nor make its writer report
        that nothing changed)."""
        try:
            await self._persist(data, creates_file)
        except OSError as exc:
            log.warning("shared config version %d applied, but its local copy %s could not "
                        "be written (%s)", self.version, self.path,
                        exc.strerror or type(exc).__name__)

    async def _persist(self, data: dict, creates_file: bool) -> None:
        if self.path is not None and (self.source in (FILE, ENVIRONMENT) or
                                      (self.source == NONE and creates_file)):
            await asyncio.to_thread(atomic_write_json, self.path, data)
            self._stamp = await asyncio.to_thread(file_stamp, self.path)
            if self.source == NONE:
                log.info("created config file %s", self.path)
                self.source = FILE
        elif creates_file and not self._warned_memory_only:
            log.warning("changes are not saved (config: %s)", self.describe())
            self._warned_memory_only = True


def _apply(mutate: Mutation, base: dict, checks: list[Check]) -> tuple[dict, Config]:
    """The mutated copy of ``base`` and its typed view, after every check
    passed. Runs in a worker thread: ``base`` is only read, and ``mutate``
    and the checks see nothing but the private copy."""
    data = copy_tree(base)
    result = mutate(data)
    if isinstance(result, dict):
        data = result
    migrate_keys(data)  # bare key strings become named entries, secrets kept
    config = parse_config(data)
    for check in checks:
        check(data)
    return data, config


def _warn_unknown(data: Any, where: str) -> None:
    for message in load_warnings(data):
        log.warning("%s: %s", where, message)
