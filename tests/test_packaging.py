"""The dashboard's files travel inside the package (a wheel holds them as
the resource packages ds2proxy_templates / ds2proxy_static, found through
importlib.resources), and a broken admin package stops the server from
starting instead of leaving it silently without its admin surface."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp

from ds2proxy.admin.assets import static_dir, templates_dir

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_carries_the_templates_and_static_files_as_packages(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT),
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


async def test_the_running_server_serves_the_installed_files(proxy):
    assert (templates_dir() / "base.html").is_file()
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/admin/static/admin.css") as resp:
            assert resp.status == 200
            assert await resp.read() == (static_dir() / "admin.css").read_bytes()


def test_an_import_error_in_admin_stops_the_app_loudly():
    # ``None`` in sys.modules makes that import fail, as a broken module would.
    code = "import sys; sys.modules['ds2proxy.admin.gate'] = None; import ds2proxy.app"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "import of ds2proxy.admin.gate halted" in result.stderr
