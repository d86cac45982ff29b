"""Worked examples for the tool prompt, built only from declared tools.

An example naming a tool the client did not declare gets called, so each
example is tied to a known tool shape and appears only when a declared tool
has that name (and, when its schema lists properties, those parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ds2proxy.canonical import ToolCall, ToolSpec
from ds2proxy.prompt.dsml import render_tool_calls

_SCRIPT = (
    "set -e\n"
    "for f in src/*.py; do\n"
    '  echo "== $f"\n'
    '  grep -n "TODO" "$f" || true\n'
    "done"
)


@dataclass(frozen=True, slots=True)
class Shape:
    """A known tool: the arguments of a typical call."""

    name: str
    args: dict[str, Any]


READERS = (
    Shape("Read", {"file_path": "src/main.py"}),
    Shape("Glob", {"pattern": "**/*.md", "path": "docs"}),
    Shape("read_file", {"path": "src/main.py"}),
    Shape("list_files", {"path": "src"}),
    Shape("search_files", {"query": "TODO"}),
)
EXECUTORS = (
    Shape("Bash", {"command": "git status", "description": "Show working tree status"}),
    Shape("execute_command", {"command": "git status"}),
    Shape("exec_command", {"cmd": "git status"}),
)
WRITERS = (
    Shape("Write", {"file_path": "notes.txt", "content": "first line\nsecond line"}),
    Shape("write_to_file", {"path": "notes.txt", "content": "first line\nsecond line"}),
    Shape("Edit", {"file_path": "src/main.py", "old_string": "x = 1", "new_string": "x = 2"}),
)
NESTED = (
    Shape("MultiEdit", {"file_path": "src/main.py", "edits": [
        {"old_string": "x = 1", "new_string": "x = 2"},
        {"old_string": "y = 1", "new_string": "y = 2"},
    ]}),
    Shape("Task", {"description": "Find config", "prompt": "Locate every config file."}),
    Shape("ask_followup_question", {"question": "Which branch?",
                                    "follow_up": ["main", "develop"]}),
)


def declared_shapes(tools: list[ToolSpec], shapes: tuple[Shape, ...]) -> list[Shape]:
    """The shapes among ``shapes`` that a declared tool fits."""
    by_name = {t.name: t for t in tools if t.kind == "function"}
    return [s for s in shapes if s.name in by_name and _fits(by_name[s.name], s)]


def _fits(tool: ToolSpec, shape: Shape) -> bool:
    properties = (tool.parameters or {}).get("properties")
    return not isinstance(properties, dict) or set(shape.args) <= set(properties)


def script_call(executor: Shape) -> Shape:
    """The executor running a multi-line script (scripts go in the command)."""
    args = {**executor.args, ("cmd" if "cmd" in executor.args else "command"): _SCRIPT}
    if "description" in args:
        args["description"] = "List TODO markers in the sources"
    return Shape(executor.name, args)


def render_block(shapes: list[Shape]) -> str:
    """The example calls written exactly as history calls are."""
    return render_tool_calls([ToolCall(f"example_{i}", s.name, s.args) for i, s in enumerate(shapes)])
