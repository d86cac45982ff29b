"""Anthropic's ``tools``: the client's own, the Anthropic-defined tools a
client runs itself, and the server tools Anthropic runs.

Anthropic-defined client tools (``bash_…``, ``text_editor_…``,
``computer_…``, ``memory_…``) carry no ``input_schema``: Anthropic's model
knows them by type. The application executes their calls like any other
tool_use, so they are declared to the model here with the input the
application expects. Server tools (web search, web fetch, code execution,
tool search, MCP toolsets …) run inside Anthropic's API: they are left out
of the tool prompt and only their names are kept, so a ``tool_choice``
naming one can be told apart from a name never declared. Web search is the
one the web chat has too: its own search serves that tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..canonical import ToolSpec
from ..errors import InvalidRequest
from .openai_chat import parse_tools as parse_function_tools

# Tool types a client declares with its own schema.
_CUSTOM_TYPES = (None, "custom", "function")

_STR = {"type": "string"}
_LINES = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
          "description": "First and last line to show (1-based; -1 for the end)."}


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def _editor(undo: bool) -> tuple[str, dict[str, Any]]:
    commands = ["view", "create", "str_replace", "insert", *(["undo_edit"] if undo else [])]
    return ("View, create and edit text files. view shows a file with line numbers (or a "
            "directory's entries); create writes file_text to a new file; str_replace "
            "replaces old_str, which must occur exactly once, with new_str; insert puts "
            "new_str after line insert_line (0: the top)."
            + (" undo_edit reverts the last edit of path." if undo else ""),
            _schema({"command": {"type": "string", "enum": commands}, "path": _STR,
                     "file_text": _STR, "old_str": _STR, "new_str": _STR,
                     "insert_line": {"type": "integer"}, "view_range": _LINES},
                    ("command", "path")))


_BASH = ("Run a command in a persistent bash session (working directory, variables "
         "and files carry over between calls); restart: true starts a fresh session.",
         _schema({"command": _STR, "restart": {"type": "boolean"}}))
_COMPUTER_ACTIONS = ["screenshot", "cursor_position", "mouse_move", "left_click",
                     "right_click", "middle_click", "double_click", "triple_click",
                     "left_click_drag", "left_mouse_down", "left_mouse_up", "scroll", "type",
                     "key", "hold_key", "wait", "zoom"]
_PAIR = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}
_COMPUTER = ("Control the computer's screen, mouse and keyboard; coordinate is [x, y] in "
             "pixels; take a screenshot to see the screen.",
             _schema({"action": {"type": "string", "enum": _COMPUTER_ACTIONS},
                      "coordinate": _PAIR, "start_coordinate": _PAIR, "text": _STR,
                      "scroll_direction": {"type": "string",
                                           "enum": ["up", "down", "left", "right"]},
                      "scroll_amount": {"type": "integer"}, "duration": {"type": "number"},
                      "region": {"type": "array", "items": {"type": "integer"}}},
                     ("action",)))
_MEMORY = ("Read and write files in the /memories directory, kept across conversations: "
           "view, create (file_text), str_replace (old_str → new_str), insert (insert_text "
           "after insert_line), delete, rename (old_path → new_path).",
           _schema({"command": {"type": "string", "enum": ["view", "create", "str_replace",
                                                           "insert", "delete", "rename"]},
                    "path": _STR, "file_text": _STR, "old_str": _STR, "new_str": _STR,
                    "insert_line": {"type": "integer"}, "insert_text": _STR,
                    "view_range": _LINES, "old_path": _STR, "new_path": _STR},
                   ("command",)))


def _defined(kind: str) -> tuple[str, dict[str, Any]] | None:
    """Description and input schema of an Anthropic-defined client tool type."""
    family, _, version = kind.rpartition("_")
    if not version.isdigit():
        return None
    if family == "text_editor":
        return _editor(undo=version < "20250429")
    return {"bash": _BASH, "computer": _COMPUTER, "memory": _MEMORY}.get(family)


@dataclass(frozen=True, slots=True)
class AnthropicTools:
    """The tools the model may call, and the names of the server tools skipped
    (``web_search``: the name of a web search tool among them, if any)."""

    client: list[ToolSpec]
    server: frozenset[str]
    web_search: str | None = None


def parse_anthropic_tools(value: Any) -> AnthropicTools:
    """``tools`` → client tool specs (custom and Anthropic-defined) and server tool names."""
    if not isinstance(value, list):
        return AnthropicTools(parse_function_tools(value), frozenset())
    tools: list[Any] = []
    server: set[str] = set()
    for index, tool in enumerate(value):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or kind in _CUSTOM_TYPES:
            tools.append({**tool, "type": "function"} if isinstance(tool, dict) else tool)
        elif isinstance(kind, str) and (defined := _defined(kind)) is not None:
            tools.append(_defined_tool(tool, index, *defined))
        else:
            tools.append({"type": "server"})  # skipped, keeping later tools' indexes
            if isinstance(tool.get("name"), str):
                server.add(tool["name"])
    return AnthropicTools(parse_function_tools(tools), frozenset(server),
                          web_search_name(value))


def _defined_tool(tool: dict, index: int, description: str,
                  schema: dict[str, Any]) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(f"'tools[{index}].name' must be a non-empty string",
                             param=f"tools[{index}].name")
    screen = [f"{key}={tool[key]}" for key in ("display_width_px", "display_height_px")
              if isinstance(tool.get(key), int)]
    if screen:
        description += f" Screen: {', '.join(screen)}."
    return {"type": "function", "name": name, "description": description,
            "input_schema": schema}


def web_search_name(value: Any) -> str | None:
    """The name of the first web search server tool in ``tools``, if any."""
    for tool in value if isinstance(value, list) else ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind.startswith("web_search_") \
                and isinstance(tool.get("name"), str):
            return tool["name"]
    return None
