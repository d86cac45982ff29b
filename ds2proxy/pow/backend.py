"""Pick the fastest DeepSeekHashV1 available: compiled if it was built, else Python.

The compiled module is an optional, top-level extension (``_ds2proxy_pow``),
so a machine without a C compiler still installs; it then solves with the
(much slower) reference and says why at start. Being top-level, an installed
build is found even when ``python -m ds2proxy`` runs from a checkout whose
source tree shadows the installed package.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import ModuleType

from . import reference

log = logging.getLogger("ds2proxy.pow")

Search = Callable[[bytes, bytes, int, int], int]
MODULE = "_ds2proxy_pow"
_CALIBRATION_PREFIX = b"calibrationsalt_1700000000_"


def _import_native() -> tuple[ModuleType | None, str]:
    try:
        import _ds2proxy_pow as native
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not hasattr(native, "search"):  # a stale placeholder build
        return None, f"{MODULE} has no search(): a stale build"
    return native, ""


NATIVE, _NATIVE_MISSING = _import_native()
IMPLEMENTATION: str = "native" if NATIVE else "python"
deepseek_hash_v1: Callable[[bytes], bytes] = (
    NATIVE.deepseek_hash_v1 if NATIVE else reference.deepseek_hash_v1)
search: Search = NATIVE.search if NATIVE else reference.search


def ns_per_nonce(search_fn: Search, nonces: int) -> float:
    """Measured cost of one nonce (a search that cannot hit)."""
    start = time.perf_counter()
    search_fn(_CALIBRATION_PREFIX, bytes(32), 1_000_000, 1_000_000 + nonces)
    return (time.perf_counter() - start) / nonces * 1e9


def describe() -> str:
    """Which solver runs, and how fast it is here (a tiny calibration)."""
    if NATIVE is None:
        return f"pure-Python DeepSeekHashV1, {ns_per_nonce(search, 20) / 1000:.0f} µs/nonce"
    lanes = getattr(NATIVE, "LANES", 1)
    how = f"{lanes} nonces at a time (AVX2)" if lanes > 1 else "single-lane (portable)"
    return (f"compiled DeepSeekHashV1, {how}, {ns_per_nonce(search, 20_000):.0f} ns/nonce")


def announce() -> None:
    """Log which implementation solves PoW (called once, when the solver starts)."""
    if NATIVE:
        log.info("PoW solver: %s", describe())
        return
    log.warning("PoW solver: pure-Python fallback in worker processes, about 1000x slower "
                "(%s). The compiled module %s could not be imported (%s); it is built by "
                "`python -m pip install .` when a C compiler and the Python headers are "
                "present (e.g. `apt install gcc python3-dev`): install them and reinstall.",
                describe(), MODULE, _NATIVE_MISSING)
