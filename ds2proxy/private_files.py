"""The config file holds every account password, token and API key, so it
is kept readable by its owner only.

Every write leaves it ``0600`` whatever mode the file had before (one created
by ``echo > config.json`` is ``0644`` under the usual umask), and with the
owner and group of the file it replaces (a server run as root must not take
an operator's file for itself). At start a file others may read is named in
the log, with its mode only: it may have been copied off the machine already.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("ds2proxy.config")

PRIVATE_MODE = 0o600
# Group and other permission bits: any of them lets someone else in.
_SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO


def make_private(fresh: Path, replaced: Path) -> None:
    """Before ``fresh`` is renamed over ``replaced``: owner-only mode, and
    ``replaced``'s owner and group where this process may give them."""
    os.chmod(fresh, PRIVATE_MODE)
    try:
        old = replaced.stat()
    except FileNotFoundError:
        return
    new = fresh.stat()
    if (new.st_uid, new.st_gid) == (old.st_uid, old.st_gid):
        return
    try:
        os.chown(fresh, old.st_uid, old.st_gid)
    except PermissionError:  # not root: the group may still be ours to give
        _keep_group(fresh, old.st_gid)
        log.warning("config file %s now belongs to this server's user (uid %d), not to uid "
                    "%d: only root may give a file away", replaced, new.st_uid, old.st_uid)


def _keep_group(fresh: Path, gid: int) -> None:
    try:
        os.chown(fresh, -1, gid)
    except PermissionError:
        log.warning("config file's group (gid %d) could not be kept", gid)


def exposure(path: Path) -> str | None:
    """Who besides the owner may use ``path`` (the file a link names), or
    None when nobody may or it cannot be looked at."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not stat.S_ISREG(mode) or not mode & _SHARED_BITS:
        return None
    who = [name for name, bits in (("its group", stat.S_IRWXG), ("every user", stat.S_IRWXO))
           if mode & bits]
    return f"mode {stat.S_IMODE(mode):04o}: {' and '.join(who)} may open it"


def warn_if_exposed(path: Path) -> None:
    """Log (once, at start) that the config's secrets are open to others."""
    problem = exposure(path)
    if problem:
        log.warning("config file %s holds account passwords and keys but is not private "
                    "(%s); the server makes it 0600 at its next write, or run: chmod 600 %s",
                    path, problem, path)
