"""Where the dashboard's templates and static files are.

They live at the top of the source tree (``templates/``, ``static/``) and
install as the resource packages ``ds2proxy_templates`` and
``ds2proxy_static`` (see ``package_dir`` in setup.cfg), so a wheel, a
``--user`` install and an editable install all find them through
:mod:`importlib.resources`, wherever the package landed.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _locate(package: str, marker: str) -> Path:
    """The directory of resource package ``package``, checked by ``marker``."""
    try:
        found = files(package) / marker
    except ModuleNotFoundError:
        raise FileNotFoundError(f"the dashboard files are not installed ({package})") from None
    path = Path(str(found))
    if not path.is_file():
        raise FileNotFoundError(f"the dashboard files are incomplete: no {marker} in {package}")
    return path.parent


def templates_dir() -> Path:
    return _locate("ds2proxy_templates", "base.html")


def static_dir() -> Path:
    return _locate("ds2proxy_static", "admin.css")
