"""The settings schema drives parsing, known fields, the admin form and the
configuration reference: one declaration per setting."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from ds2proxy.admin import settings as admin_settings
from ds2proxy.config import Config, ConfigError, parse_config
from ds2proxy.config_docs import render
from ds2proxy.config_fields import KNOWN_PATHS, unknown_fields
from ds2proxy.settings_schema import (
    FormSpec,
    known_tree,
    leaves,
    parse_section,
    section,
    setting,
    value_at,
)

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Inner:
    depth: int = setting(3, "How deep.", min=1, max=9)


@dataclass(frozen=True, slots=True)
class Toy:
    """A section the way a feature module declares one."""

    mode: str = setting("a", "Which mode.", choices=("a", "b"),
                        form=FormSpec("Toys", "Mode"))
    ratio: float = setting(0.5, "A fraction.", min=0.0)
    limit: int | None = setting(None, "A cap; null: none.", min=0)
    token: str = setting("", "A secret.", secret=True)
    inner: Inner = section(lambda: Inner(5), "Nested.", label="Inner:")


def test_a_declared_section_parses_with_its_defaults_and_checks():
    assert parse_section(Toy, None, "toy.") == Toy("a", 0.5, None, "", Inner(5))
    parsed = parse_section(Toy, {"mode": "b", "ratio": 2, "limit": 4, "inner": {"depth": 9}},
                           "toy.")
    assert parsed == Toy("b", 2.0, 4, "", Inner(9))
    assert isinstance(parsed.ratio, float)


@pytest.mark.parametrize(("node", "path", "problem"), [
    ({"mode": "c"}, "toy.mode", "must be one of a, b"),
    ({"ratio": -1}, "toy.ratio", "at least 0"),
    ({"ratio": True}, "toy.ratio", "got a boolean"),
    ({"limit": "3"}, "toy.limit", "expected an integer"),
    ({"inner": {"depth": 10}}, "toy.inner.depth", "between 1 and 9"),
    ({"inner": []}, "toy.inner", "expected an object"),
])
def test_errors_name_the_json_path(node, path, problem):
    with pytest.raises(ConfigError) as caught:
        parse_section(Toy, node, "toy.")
    assert caught.value.field == path
    assert problem in str(caught.value)


def test_known_fields_docs_and_form_come_from_the_declaration():
    assert known_tree(Toy) == {"mode": None, "ratio": None, "limit": None, "token": None,
                               "inner": {"depth": None}}
    found = {leaf.path: leaf for leaf in leaves(Toy, prefix="toy.")}
    assert found["toy.inner.depth"].default == 5
    assert found["toy.inner.depth"].label_prefix == "Inner:"
    assert found["toy.mode"].entry.kind == "choice"
    assert found["toy.limit"].entry.nullable
    assert "token" not in repr(Toy(token="s3cret")) and "s3cret" not in repr(Toy(token="s3cret"))


def test_every_setting_is_described_and_the_form_shows_no_secret():
    for leaf in leaves(Config):
        assert leaf.spec.doc.strip(), leaf.path
        assert not (leaf.spec.secret and leaf.spec.form), leaf.path
    formed = {leaf.path for leaf in leaves(Config) if leaf.spec.form is not None}
    assert formed == set(admin_settings.SETTINGS)
    assert not {"metrics.token", "keys", "accounts"} & set(admin_settings.SETTINGS)


def test_known_paths_cover_every_setting_and_managed_field():
    assert {leaf.path for leaf in leaves(Config)} <= set(KNOWN_PATHS)
    assert "admin.jwt_secret" in KNOWN_PATHS
    assert unknown_fields({"health": {"cooldown": {"login": {"base_secs": 1}}}}) == [
        "health.cooldown.login.base_secs"]


def test_attributes_follow_the_json_paths():
    doc = {"models": {"default": "deepseek-reasoner"}, "responses": {"store_ttl_seconds": 60},
           "dev_captures": {"enabled": True}, "usage": {"retention_raw_days": 3},
           "health": {"cooldown": {"auth": {"base_seconds": 5}}}}
    cfg = parse_config(doc)
    for path, value in [("models.default", "deepseek-reasoner"),
                        ("responses.store_ttl_seconds", 60), ("dev_captures.enabled", True),
                        ("usage.retention_raw_days", 3), ("health.cooldown.auth.base_seconds", 5)]:
        assert value_at(cfg, path) == value
    assert admin_settings.flat_values(cfg)["health.cooldown.auth.base_seconds"] == 5


def test_cross_field_rules_name_the_field():
    with pytest.raises(ConfigError) as caught:
        parse_config({"usage": {"retention_raw_days": 30, "retention_hourly_days": 10}})
    assert caught.value.field == "usage.retention_hourly_days"


def test_example_config_is_valid_and_uses_only_known_fields():
    doc = json.loads((ROOT / "config.example.json").read_text())
    assert len(parse_config(doc).accounts) == 3
    assert unknown_fields(doc) == []


def test_configuration_reference_is_current():
    """Regenerate with: python -m ds2proxy config-docs docs/configuration.md"""
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/configuration.md is stale: run python -m ds2proxy " \
                                  "config-docs docs/configuration.md"
    for leaf in leaves(Config):
        assert f"`{leaf.path}`" in committed


def test_config_docs_command_writes_the_reference(tmp_path):
    from ds2proxy.cli import main

    out = tmp_path / "configuration.md"
    assert main(["config-docs", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()
