"""The layering rules, read from the source with ``ast`` (every import
statement, including those inside functions and ``TYPE_CHECKING`` blocks):

1. the engine (``ds2proxy/`` minus ``dialects/`` and ``testing/``) never
   imports the dialect layer (``ds2proxy.dialects``) or a plugin;
2. the dialect layer never imports a plugin;
3. no plugin imports another plugin;
4. a plugin (first-party in ``plugins/``, and ``examples/hello-dialect``)
   imports from ds2proxy only the public plugin API (``ds2proxy.plugin_api``)
   and the dialect layer; anything else it needs is stdlib or third-party.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "ds2proxy"
PLUGINS = REPO / "plugins"
EXAMPLE = REPO / "examples" / "hello-dialect" / "ds2proxy_hello"
PUBLIC_API = ("ds2proxy.plugin_api", "ds2proxy.plugin_api.contract")
DIALECTS = "ds2proxy.dialects"
PLUGIN_ROOTS = ("ds2proxy_plugins", "plugins", "ds2proxy_hello")


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in ``path`` (relative ones
    resolved against ``module``; ``from x import y`` also yields ``x.y``)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def engine_files() -> Iterator[tuple[Path, str]]:
    for path in sorted(ENGINE.rglob("*.py")):
        rel = path.relative_to(ENGINE).parts
        if rel[0] not in ("dialects", "testing"):
            yield path, module_name(path, ENGINE, "ds2proxy")


def plugin_files() -> Iterator[tuple[Path, str, str]]:
    """(file, module, the plugin's own package) of every plugin."""
    for path in sorted(PLUGINS.rglob("*.py")):
        rel = path.relative_to(PLUGINS).parts
        if len(rel) > 1:
            yield path, module_name(path, PLUGINS, "ds2proxy_plugins"), \
                f"ds2proxy_plugins.{rel[0]}"
    for path in sorted(EXAMPLE.rglob("*.py")):
        yield path, module_name(path, EXAMPLE, "ds2proxy_hello"), "ds2proxy_hello"


def engine_violations(path: Path, module: str) -> list[str]:
    return [f"{path.relative_to(REPO)}:{line} imports {name}"
            for line, name in imports(path, module)
            if under(name, DIALECTS, *PLUGIN_ROOTS)]


def plugin_problems(path: Path, module: str, own: str) -> list[tuple[int, str]]:
    out = []
    for line, name in imports(path, module):
        if under(name, *PLUGIN_ROOTS) and not under(name, own):
            out.append((line, f"imports another plugin: {name}"))
        elif under(name, "ds2proxy") and not under(name, *PUBLIC_API, DIALECTS):
            out.append((line, f"imports an internal module: {name}"))
    return out


def plugin_violations(path: Path, module: str, own: str) -> list[str]:
    return [f"{path.relative_to(REPO)}:{line} {problem}"
            for line, problem in plugin_problems(path, module, own)]


def test_the_engine_never_imports_dialects_or_plugins():
    found = [v for path, module in engine_files() for v in engine_violations(path, module)]
    assert found == []


def test_the_dialect_layer_never_imports_a_plugin():
    found = [f"{path.relative_to(REPO)}:{line} imports {name}"
             for path in sorted((ENGINE / "dialects").rglob("*.py"))
             for line, name in imports(path, module_name(path, ENGINE, "ds2proxy"))
             if under(name, *PLUGIN_ROOTS)]
    assert found == []


def test_plugins_use_only_the_public_api_and_the_dialect_layer():
    files = list(plugin_files())
    assert {own for _, _, own in files} >= {"ds2proxy_plugins.openai", "ds2proxy_hello"}
    found = [v for path, module, own in files for v in plugin_violations(path, module, own)]
    assert found == []


@pytest.mark.parametrize("source, expected", [
    ("from ds2proxy.dialects.openai_chat import parse_chat_request", "ds2proxy.dialects"),
    ("from .dialects import json_response", "ds2proxy.dialects"),
    ("def f():\n    import ds2proxy_plugins.gemini", "ds2proxy_plugins.gemini"),
])
def test_an_engine_violation_is_caught(tmp_path, source, expected):
    path = tmp_path / "bad.py"
    path.write_text(source)
    found = [name for _, name in imports(path, "ds2proxy.bad") if under(name, DIALECTS,
                                                                        *PLUGIN_ROOTS)]
    assert any(name.startswith(expected) for name in found)


@pytest.mark.parametrize("source, problem", [
    ("from ds2proxy.core import Core", "internal module: ds2proxy.core"),
    ("from ds2proxy import relay", "internal module: ds2proxy.relay"),
    ("from ..gemini.render import candidate", "another plugin: ds2proxy_plugins.gemini"),
    ("import ds2proxy_plugins.claude", "another plugin: ds2proxy_plugins.claude"),
])
def test_a_plugin_violation_is_caught(tmp_path, source, problem):
    path = tmp_path / "bad.py"
    path.write_text(source)
    found = plugin_problems(path, "ds2proxy_plugins.openai.bad", "ds2proxy_plugins.openai")
    assert any(problem in text for _, text in found), found

