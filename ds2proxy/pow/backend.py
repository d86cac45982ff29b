"""Pick the fastest DeepSeekHashV1 available: compiled if it was built, else Python.

The compiled module is an optional extension, so a machine without a C
compiler still installs; it then solves with the (much slower) reference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType

from . import reference

log = logging.getLogger("ds2proxy.pow")

Search = Callable[[bytes, bytes, int, int], int]


def _import_native() -> tuple[ModuleType | None, str]:
    try:
        from . import _native
    except ImportError as exc:
        return None, str(exc)
    if not hasattr(_native, "search"):  # a stale placeholder build
        return None, "compiled module has no search()"
    return _native, ""


NATIVE, _NATIVE_MISSING = _import_native()
IMPLEMENTATION: str = "native" if NATIVE else "python"
deepseek_hash_v1: Callable[[bytes], bytes] = (
    NATIVE.deepseek_hash_v1 if NATIVE else reference.deepseek_hash_v1)
search: Search = NATIVE.search if NATIVE else reference.search


def announce() -> None:
    """Log which implementation solves PoW (called once, when the solver starts)."""
    if NATIVE:
        log.info("PoW solver: compiled DeepSeekHashV1")
    else:
        log.warning("PoW solver: pure-Python fallback in worker processes, about 1000x "
                    "slower (compiled module unavailable: %s)", _NATIVE_MISSING)
