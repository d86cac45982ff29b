"""Run ``python -m ds2proxy`` with a heap report on SIGUSR1 (bench use only).

RSS says how many pages the process touched, not how much its allocators
hold: a burst can touch pages another burst left resident or not, so two
identical bursts may differ in peak RSS by a megabyte or two with no more
memory in use. On SIGUSR1 this launcher writes, as JSON to the path in
``BENCH_HEAP_OUT``, what the two allocators under Python hold: pymalloc's
arenas (1 MiB each; they only grow when a burst needs more than is free)
and glibc's heap (bytes in use and bytes free, from ``mallinfo2``).

    BENCH_HEAP_OUT=heap.json python bench/heap_probe.py --config config.json
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import runpy
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

MALLINFO2_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                    "fsmblks", "uordblks", "fordblks", "keepcost")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO2_FIELDS]


def pymalloc_stats() -> dict[str, int]:
    """Arenas and bytes in blocks, parsed from ``sys._debugmallocstats``
    (which writes to the C-level stderr, so it is caught at the descriptor)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    stats = {}
    for name, pattern in (("arenas", r"# arenas allocated current\s*=\s*([\d,]+)"),
                          ("arenas_highwater", r"# arenas highwater mark\s*=\s*([\d,]+)"),
                          ("bytes_in_blocks", r"# bytes in allocated blocks\s*=\s*([\d,]+)")):
        found = re.search(pattern, text)
        if found:
            stats[name] = int(found.group(1).replace(",", ""))
    return stats


def glibc_stats() -> dict[str, int]:
    """glibc's heap (all arenas): bytes in use, free, and in mmapped chunks."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return {"in_use": info.uordblks, "free": info.fordblks, "mmapped": info.hblkhd}


def report(_sig: int, _frame: FrameType | None) -> None:
    path = Path(os.environ["BENCH_HEAP_OUT"])
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps({"pymalloc": pymalloc_stats(), "glibc": glibc_stats()}))
    staged.replace(path)  # the reader sees a whole report or none


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, report)
    sys.argv[0] = "ds2proxy"
    runpy.run_module("ds2proxy", run_name="__main__", alter_sys=True)
