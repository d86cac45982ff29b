"""The dashboard's files travel inside the package (a wheel holds them as
the resource packages ds2proxy_templates / ds2proxy_static, found through
importlib.resources), the wheel holds every package of the source tree (its
``python -m ds2proxy`` runs without the checkout), and a broken admin package stops the server from
starting instead of leaving it silently without its admin surface."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest

from ds2proxy.admin.assets import static_dir, templates_dir

ROOT = Path(__file__).resolve().parents[1]
BUILD_LEFTOVERS = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.so",
                   ".mypy_cache", ".pytest_cache", ".hypothesis", "test-artifacts")


@pytest.mark.timeout(900)  # a wheel build compiles the PoW extension: minutes on a busy machine
def test_a_wheel_carries_the_templates_and_static_files_as_packages(tmp_path: Path):
    # Built from a clean copy: pip builds in the source tree, and a build/
    # folder left there by an earlier build would fill the gaps of this one.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True,
                   timeout=600)
    wheel = next((tmp_path / "dist").glob("ds2proxy-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for source, package in (("templates", "ds2proxy_templates"), ("static", "ds2proxy_static")):
        for file in (ROOT / source).iterdir():
            if file.is_file():
                assert f"{package}/{file.name}" in names, file.name
    assert not [n for n in names if ".data/" in n], "no data_files guessed under a prefix"
    # Installed anywhere (here: a bare target directory, no site hooks),
    # importlib.resources finds them.
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    probe = ("from importlib.resources import files; "
             "print(files('ds2proxy_templates') / 'base.html'); "
             "print(files('ds2proxy_static') / 'admin.css')")
    out = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(target)})
    found = [Path(line) for line in out.stdout.splitlines()]
    assert all(p.is_file() and p.is_relative_to(target) for p in found), found
    _the_installed_copy_runs(target, tmp_path)


def _source_packages() -> set[str]:
    """Every package of the checkout, by the name it installs under."""
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for top in ("ds2proxy", "plugins") for init in (ROOT / top).rglob("__init__.py")}
    return {name.replace("plugins", "ds2proxy_plugins", 1) if name.startswith("plugins")
            else name for name in found}


def _the_installed_copy_runs(target: Path, cwd: Path) -> None:
    """The wheel alone (the checkout out of reach) holds every package: its
    command line starts, and every module it ships imports."""
    missing = sorted(name for name in _source_packages()
                     if not (target / name.replace(".", "/") / "__init__.py").is_file())
    assert not missing, f"packages left out of the wheel: {missing}"
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-m", "ds2proxy", "--help"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--config" in done.stdout
    probe = ("import importlib, pkgutil, ds2proxy, ds2proxy_plugins; "
             "names = [m.name for p in (ds2proxy, ds2proxy_plugins) for m in "
             "pkgutil.walk_packages(p.__path__, p.__name__ + '.') "
             "if not m.name.endswith('__main__')]; "
             "[importlib.import_module(n) for n in names]; "
             "print(ds2proxy.__file__)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(target)


async def test_the_running_server_serves_the_installed_files(proxy):
    assert (templates_dir() / "base.html").is_file()
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/admin/static/admin.css") as resp:
            assert resp.status == 200 and resp.content_type == "text/css"
            assert await resp.read() == (static_dir() / "admin.css").read_bytes()
            modified = resp.headers["Last-Modified"]
        async with http.get(proxy.url + "/admin/static/admin.css",
                            headers={"If-Modified-Since": modified}) as resp:
            assert resp.status == 304
        async with http.head(proxy.url + "/admin/static/admin.js") as resp:
            assert resp.status == 200


@pytest.mark.parametrize("name", ["__init__.py", "__pycache__", "..%2Fconfig.json",
                                  "%2E%2E%2F%2E%2E%2Fsetup.cfg", "no-such.css"])
async def test_the_static_folder_serves_only_its_assets(proxy, name):
    """The static folder is also a Python package: its __init__.py (and any
    bytecode beside it) was served as a dashboard asset."""
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/admin/static/" + name) as resp:
            assert resp.status == 404, name


def test_an_import_error_in_admin_stops_the_app_loudly():
    # ``None`` in sys.modules makes that import fail, as a broken module would.
    code = "import sys; sys.modules['ds2proxy.admin.gate'] = None; import ds2proxy.app"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "import of ds2proxy.admin.gate halted" in result.stderr
