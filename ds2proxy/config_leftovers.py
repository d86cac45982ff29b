"""The config's temp files: how they are named, and removing the ones a
killed process left behind.

A write goes to ``.<name>.<8 random chars>`` beside the config (beside the
file it links to, when it is a symbolic link), then is
renamed over it. ``kill -9`` between the two leaves that file — with every
password, token and key in it — so the server removes such leftovers when it
starts. Only names of exactly that shape, and only regular files, are
touched; nothing else in the folder is.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger("ds2proxy.config")

# tempfile.mkstemp's random part: 8 of [a-z0-9_].
_RANDOM_PART = re.compile(r"[a-z0-9_]{8}")


def written_file(path: Path) -> Path:
    """The file a write to ``path`` replaces: the one a symbolic link names
    (replacing the link itself would cut it from its target)."""
    return Path(os.path.realpath(path))


def temp_prefix(path: Path) -> str:
    """The prefix :func:`tempfile.mkstemp` gets for a temp copy of ``path``."""
    return f".{path.name}."


def leftover_temp_files(path: Path) -> list[Path]:
    path = written_file(path)
    prefix = temp_prefix(path)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    return [e for e in entries
            if e.name.startswith(prefix) and _RANDOM_PART.fullmatch(e.name[len(prefix):])
            and e.is_file() and not e.is_symlink()]


def remove_leftover_temp_files(path: Path) -> int:
    """Delete leftovers of interrupted writes to ``path``; how many went."""
    removed = 0
    for leftover in leftover_temp_files(path):
        try:
            leftover.unlink()
        except OSError as exc:
            log.warning("could not remove the leftover config temp file %s: %s",
                        leftover.name, exc.strerror)
            continue
        removed += 1
    if removed:
        log.warning("removed %d leftover temp file(s) of %s from an interrupted write",
                    removed, path.name)
    return removed
