"""Chat Completions' deprecated ``functions`` / ``function_call`` pair.

The API still takes it: a request that declares ``functions`` (and no
``tools``) gets at most one call back, as ``message.function_call`` with
``finish_reason: "function_call"`` (a stream's deltas carry
``function_call`` too). The declarations read as tools do, so everything
between parsing and rendering is the ordinary tool-call path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest

if TYPE_CHECKING:
    from .openai_chat import ChatStyle

FINISH = "function_call"


def uses_functions(body: dict[str, Any]) -> bool:
    """Whether the request declares legacy ``functions`` (``tools`` wins)."""
    return body.get("functions") is not None and body.get("tools") is None


def as_tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """``functions`` as ``tools`` and ``function_call`` as ``tool_choice``;
    a declaration without a name, or a choice of the wrong shape, is a 400
    naming the legacy field."""
    functions = body.get("functions")
    if not isinstance(functions, list) or not functions:
        raise InvalidRequest("'functions' must be a non-empty list", param="functions")
    for index, function in enumerate(functions):
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest(f"'functions[{index}].name' must be a non-empty string",
                                 param=f"functions[{index}].name")
    tools = [{"type": "function", "function": function} for function in functions]
    names = {function["name"].strip() for function in functions}
    return tools, _choice(body.get("function_call"), names)


def _choice(value: Any, names: set[str]) -> Any:
    if value is None or value in ("auto", "none"):
        return value
    name = value.get("name") if isinstance(value, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest("'function_call' must be \"auto\", \"none\" or an object "
                             "with a function name", param="function_call")
    if name not in names:
        raise InvalidRequest("'function_call.name' names a function not in 'functions'",
                             param="function_call.name")
    return {"type": "function", "function": {"name": name}}


def legacy_style(style: ChatStyle, body: dict[str, Any]) -> ChatStyle:
    """``style`` rendering calls as ``function_call`` when the request used ``functions``."""
    if not uses_functions(body):
        return style
    return replace(style, legacy_functions=True,
                   finish_names={**style.finish_names, "tool_calls": FINISH})
