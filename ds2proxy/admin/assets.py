"""Where the dashboard's templates and static files are.

In a checkout (or an editable install) they sit at the top of the source
tree, two levels above this package; an installed wheel puts them under
``<prefix>/share/ds2proxy/`` as data files.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _locate(name: str, marker: str) -> Path:
    candidates = (_SOURCE_ROOT / name, Path(sys.prefix) / "share" / "ds2proxy" / name)
    for folder in candidates:
        if (folder / marker).is_file():
            return folder
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"dashboard {name} not found (looked in {searched})")


def templates_dir() -> Path:
    return _locate("templates", "base.html")


def static_dir() -> Path:
    return _locate("static", "admin.css")
