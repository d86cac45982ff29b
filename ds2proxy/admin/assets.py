"""Where the dashboard's templates and static files are.

They live at the top of the source tree (``templates/``, ``static/``) and
install as the resource packages ``ds2proxy_templates`` and
``ds2proxy_static`` (see ``package_dir`` in setup.cfg), so a wheel, a
``--user`` install and an editable install all find them through
:mod:`importlib.resources`, wherever the package landed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from aiohttp import web

# What the dashboard serves from its static folder: the folder is also a
# Python package (its __init__.py, perhaps its bytecode), which is not an asset.
ASSET_SUFFIXES = frozenset({".css", ".js", ".svg", ".png", ".ico", ".woff2"})


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


def asset_handler(directory: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``GET /admin/static/{name}``: the asset files directly in ``directory``
    (listed once, at start), each with its own conditional-request headers;
    any other name is a 404."""
    assets = {path.name: path for path in directory.iterdir()
              if path.suffix in ASSET_SUFFIXES and path.is_file()}

    async def serve(request: web.Request) -> web.StreamResponse:
        path = assets.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    return serve
