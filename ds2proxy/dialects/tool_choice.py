"""tool_choice of every dialect → one normalised policy, checked at request time.

A request that forces a tool it did not declare, or requires a call with no
tools, can never be satisfied; it is refused with a 400 before any upstream
work instead of failing later as a violation.
"""

from __future__ import annotations

from typing import Any

from ds2proxy.canonical import ToolChoice, ToolSpec
from ds2proxy.errors import InvalidRequest, brief

_PARAM = "tool_choice"
_MODES = {"auto": "auto", "": "auto", "none": "none", "required": "required"}


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(f"invalid tool_choice: {message}", param=_PARAM)


def parse_openai_tool_choice(value: object, tools: list[ToolSpec]) -> ToolChoice:
    """Chat Completions and Responses forms (strings, typed objects, allowed_tools)."""
    if value is None:
        return ToolChoice()
    if isinstance(value, str):
        if value not in _MODES:
            raise _invalid("a string must be one of: auto, none, required")
        return _checked(ToolChoice(_MODES[value]), tools)  # type: ignore[arg-type]
    if not isinstance(value, dict):
        raise _invalid("expected a string or an object")
    return _checked(_openai_object(value), tools)


def _openai_object(value: dict[str, Any]) -> ToolChoice:
    kind = value.get("type")
    if kind == "allowed_tools":
        inner = value.get("allowed_tools", value)
        if not isinstance(inner, dict):
            raise _invalid("allowed_tools must be an object")
        mode = inner.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise _invalid("allowed_tools.mode must be auto or required")
        return ToolChoice(mode, allowed=_names(inner.get("tools")))
    allowed = _names(value["allowed_tools"]) if "allowed_tools" in value else None
    name = _function_name(value)
    if kind in ("function", "custom") or (kind == "auto" and name):
        if not name:
            raise _invalid(f'"type": "{kind}" needs a tool name')
        return ToolChoice("forced", name=name, allowed=allowed)
    if kind in ("auto", "none", "required"):
        return ToolChoice(kind, allowed=allowed)
    raise _invalid("type must be one of: auto, none, required, function, custom, "
                   "allowed_tools")


def _function_name(value: dict[str, Any]) -> str | None:
    """``name``, else ``function.name`` (Chat), else ``custom.name`` (Chat's custom tools)."""
    name = value.get("name")
    for key in ("function", "custom"):
        inner = value.get(key)
        if not name and isinstance(inner, dict):
            name = inner.get("name")
    return name if isinstance(name, str) and name else None


def _names(entries: object) -> frozenset[str]:
    """Names from ``["a", {"name": "b"}, {"function": {"name": "c"}}, {"custom": …}]``."""
    if not isinstance(entries, list) or not entries:
        raise _invalid("allowed tools must be a non-empty list")
    names = set()
    for entry in entries:
        name = entry if isinstance(entry, str) and entry else (
            _function_name(entry) if isinstance(entry, dict) else None)
        if name is None:
            raise _invalid("each allowed tool must be a name or an object with a name")
        names.add(name)
    return frozenset(names)


def parse_anthropic_tool_choice(value: object, tools: list[ToolSpec],
                                server: frozenset[str] = frozenset()
                                ) -> tuple[ToolChoice, bool]:
    """Messages API form; the flag is ``disable_parallel_tool_use``.

    ``server`` names the declared server tools, which Anthropic runs itself
    and which have no upstream here. Forcing one is answered in text with
    no tool call: a call to it could not be run, and a call to another tool
    is not what was forced. ``any`` with only server tools declared leaves
    the model free to answer, as it would after the server tool ran."""
    if value is None:
        return ToolChoice(), False
    if not isinstance(value, dict):
        raise _invalid("expected an object")
    single = value.get("disable_parallel_tool_use", False)
    if not isinstance(single, bool):
        raise _invalid("disable_parallel_tool_use must be a boolean")
    kind = value.get("type")
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid('"type": "tool" needs a name')
        if name in server:
            return ToolChoice("none"), single
        choice = ToolChoice("forced", name=name)
    elif kind == "any" and not tools and server:
        return ToolChoice(), single
    elif kind in ("auto", "any", "none"):
        choice = ToolChoice("required" if kind == "any" else kind)
    else:
        raise _invalid("type must be one of: auto, any, none, tool")
    return _checked(choice, tools), single


_GEMINI_MODES = {"AUTO": "auto", "MODE_UNSPECIFIED": "auto", "VALIDATED": "auto",
                 "ANY": "required", "NONE": "none"}


def parse_gemini_tool_config(value: object, tools: list[ToolSpec]) -> ToolChoice:
    """``toolConfig.functionCallingConfig`` (camelCase or snake_case)."""
    if value is None:
        return ToolChoice()
    if not isinstance(value, dict):
        raise _invalid("toolConfig must be an object")
    config = value.get("functionCallingConfig", value.get("function_calling_config"))
    if config is None:
        config = value if "mode" in value else {}
    if not isinstance(config, dict):
        raise _invalid("functionCallingConfig must be an object")
    mode = config.get("mode", "AUTO")
    if not isinstance(mode, str) or mode.upper() not in _GEMINI_MODES:
        raise _invalid("functionCallingConfig.mode must be one of: AUTO, ANY, NONE, VALIDATED")
    policy = _GEMINI_MODES[mode.upper()]
    raw_names = config.get("allowedFunctionNames", config.get("allowed_function_names"))
    # A repeated field left empty is unset in Protocol Buffers' JSON (SDKs send ``[]``).
    if policy == "none" or raw_names is None or raw_names == []:
        return _checked(ToolChoice(policy), tools)  # type: ignore[arg-type]
    names = _names(raw_names)
    if policy == "required" and len(names) == 1:
        return _checked(ToolChoice("forced", name=next(iter(names))), tools)
    return _checked(ToolChoice(policy, allowed=names), tools)  # type: ignore[arg-type]


def _checked(choice: ToolChoice, tools: list[ToolSpec]) -> ToolChoice:
    """Refuse a policy no answer could satisfy; names resolved to declared ones."""
    declared = {t.name for t in tools}
    if choice.mode in ("required", "forced") and not tools:
        raise _invalid(f"{choice.mode} needs at least one declared tool")
    allowed = None
    if choice.allowed is not None:
        unknown = sorted(n for n in choice.allowed if not _resolve(n, declared))
        if unknown:
            raise _invalid(f"allowed tools not declared: {_named(unknown)}")
        allowed = frozenset(m for n in choice.allowed for m in _resolve(n, declared))
    if choice.name is None:
        return ToolChoice(choice.mode, allowed=allowed)
    matches = _resolve(choice.name, declared)
    if not matches:
        raise _invalid(f"tool {brief(choice.name)!r} is not declared")
    if len(matches) > 1:
        # Namespaces sharing a tool name: any tool of that name satisfies it.
        return ToolChoice("required", allowed=frozenset(matches))
    return ToolChoice("forced", name=matches[0], allowed=allowed)


_NAMED = 5  # names an error lists before it counts the rest


def _named(names: list[str]) -> str:
    """A few names, each cut short, and how many more: an error echoes what
    the client sent, never megabytes of it."""
    shown = ", ".join(brief(name) for name in names[:_NAMED])
    rest = len(names) - _NAMED
    return f"{shown} and {rest} more" if rest > 0 else shown


def _resolve(name: str, declared: set[str]) -> list[str]:
    """The declared tools ``name`` means: itself, else the namespaced tools
    whose own name it is. The official APIs name a namespace's tool by its
    own name only (tool_choice has no namespace field), while a tool name two
    namespaces share is declared here as ``<namespace>.<name>``."""
    if name in declared:
        return [name]
    return sorted(d for d in declared if "." in d and d.rsplit(".", 1)[1] == name)
