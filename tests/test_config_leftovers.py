"""A write interrupted by ``kill -9`` leaves ``.config.json.<random>`` with
every secret in it; the server removes such leftovers when it starts, and
nothing else."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from conftest import ProxyFactory

from ds2proxy.config_store import atomic_write_json
from ds2proxy.config_leftovers import leftover_temp_files, temp_prefix

SECRET_DOC = json.dumps({"keys": ["sk-leftover-secret"], "accounts": []})


async def test_leftover_temp_files_are_removed_at_start(proxy_factory: ProxyFactory,
                                                        tmp_path: Path):
    # proxy_factory's first config is config-0.json in tmp_path.
    config = tmp_path / "config-0.json"
    fd, made_by_mkstemp = tempfile.mkstemp(prefix=temp_prefix(config), dir=tmp_path)
    with open(fd, "w") as fh:
        fh.write(SECRET_DOC)
    ours = [Path(made_by_mkstemp), tmp_path / ".config-0.json.ab_12xyz"]
    ours[1].write_text(SECRET_DOC)
    not_ours = [tmp_path / ".config-0.json.bak", tmp_path / ".config-0.json.ABCDEFGH",
                tmp_path / ".config-0.json.abc1234", tmp_path / ".config-0.json.abcdefghi",
                tmp_path / ".other.json.abcdefgh", tmp_path / "config-0.json.abcdefgh"]
    for path in not_ours:
        path.write_text("keep me")
    (tmp_path / ".config-0.json.dir12345").mkdir()
    (tmp_path / ".config-0.json.lnk12345").symlink_to(not_ours[0])

    proxy = await proxy_factory()

    assert proxy.config_path == config
    assert not any(p.exists() for p in ours)
    assert all(p.read_text() == "keep me" for p in not_ours)
    assert (tmp_path / ".config-0.json.dir12345").is_dir()
    assert (tmp_path / ".config-0.json.lnk12345").is_symlink()


def test_the_writer_names_temp_files_as_the_cleaner_expects(tmp_path: Path, monkeypatch):
    config = tmp_path / "config.json"
    seen: list[str] = []
    real_replace = __import__("os").replace

    def spy_replace(src: str, dst: object) -> None:
        seen.extend(p.name for p in leftover_temp_files(config))
        real_replace(src, dst)

    monkeypatch.setattr("ds2proxy.config_store.os.replace", spy_replace)
    atomic_write_json(config, {"keys": ["k"]})
    assert len(seen) == 1 and seen[0].startswith(".config.json.")
    assert leftover_temp_files(config) == []


def test_leftovers_of_a_symlinked_config_are_found_beside_its_file(tmp_path: Path) -> None:
    """Writes through a link leave their temp files beside the file it names."""
    target = tmp_path / "kept" / "ds2proxy.json"
    target.parent.mkdir()
    target.write_text(SECRET_DOC)
    link = tmp_path / "config.json"
    link.symlink_to(target)
    leftover = target.parent / ".ds2proxy.json.ab_12xyz"
    leftover.write_text(SECRET_DOC)
    assert leftover_temp_files(link) == [leftover]
