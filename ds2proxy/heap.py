"""The C heap under the process: fewer malloc arenas, freed memory returned.

glibc gives each thread that allocates its own arena (up to eight per core)
and keeps what is freed in it. The proxy's threads (PoW solves, token
counts, the SQLite writers) allocate little, so two arenas serve them as
well, and the memory a burst of streams freed is reused rather than spread
over more arenas. Elsewhere (other C libraries) both calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
ARENAS = 2


@cache
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before threads start); True if applied."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Hand the heap's free memory back to the system; True if any was."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
