"""Past tool calls rendered in the DSML syntax the model is asked to write.

History calls shown in any other shape (wire JSON, ad-hoc text blocks) are
imitated by the model, whose own calls then leak out as text; history calls
left out make it lose track of what it already did. So every past call is
rendered exactly as a fresh call would be written.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ds2proxy.canonical import ToolCall

WRAPPER_OPEN = "<|DSML|tool_calls>"
WRAPPER_CLOSE = "</|DSML|tool_calls>"
INVOKE_CLOSE = "</|DSML|invoke>"
PARAMETER_CLOSE = "</|DSML|parameter>"

_XML_NAME = re.compile(r"[^\W\d][\w.-]*")
_ATTR_ESCAPES = (("&", "&amp;"), ('"', "&quot;"), ("<", "&lt;"), (">", "&gt;"))


def render_tool_calls(calls: list[ToolCall]) -> str:
    """One wrapper holding one invoke per named call; "" when none has a name."""
    invokes = [_render_invoke(call) for call in calls if call.name.strip()]
    if not invokes:
        return ""
    return "\n".join([WRAPPER_OPEN, *invokes, WRAPPER_CLOSE])


def _render_invoke(call: ToolCall) -> str:
    lines = [f'  <|DSML|invoke name="{_attr(call.name)}">']
    for name, inner in _parameters(call):
        lines.append(f'    <|DSML|parameter name="{_attr(name)}">{inner}{PARAMETER_CLOSE}')
    lines.append(f"  {INVOKE_CLOSE}")
    return "\n".join(lines)


def _parameters(call: ToolCall) -> list[tuple[str, str]]:
    """(name, inner XML) pairs, following the argument shape rules."""
    args = _decoded_arguments(call)
    if call.kind == "custom":
        # Freeform tools are described to the model as taking one "input" text.
        return [("input", _cdata(_argument_text(call)))]
    if isinstance(args, str):
        return [("content", _cdata(args))]
    if isinstance(args, list):
        return [("item", _value(item)) for item in args]
    if not isinstance(args, dict):
        return [("value", _value(args))]
    if not all(_nested_keys_valid(value) for value in args.values()):
        # Child elements cannot carry such a key: keep the arguments intact
        # as one text rather than rename or drop anything.
        return [("content", _cdata(_argument_text(call)))]
    return [(str(key), _value(args[key])) for key in sorted(args, key=str)]


def _decoded_arguments(call: ToolCall) -> Any:
    """The arguments as a JSON value; text that is not one JSON document
    (e.g. glued ``{}{"q":"x"}``) stays the verbatim string."""
    raw = call.arguments
    if not isinstance(raw, str) or call.kind == "custom":
        return raw
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _argument_text(call: ToolCall) -> str:
    if isinstance(call.arguments, str):
        return call.arguments
    return json.dumps(call.arguments, ensure_ascii=False, separators=(",", ":"), default=str)


def _nested_keys_valid(value: Any) -> bool:
    """True when every object key below the top level is a usable XML tag."""
    if isinstance(value, dict):
        return all(
            isinstance(key, str) and _XML_NAME.fullmatch(key) and _nested_keys_valid(child)
            for key, child in value.items()
        )
    if isinstance(value, list):
        return all(_nested_keys_valid(child) for child in value)
    return True


def _value(value: Any) -> str:
    """Inner XML of one value: strings in CDATA, scalars plain, containers as elements."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)
    if isinstance(value, dict):
        return "".join(f"<{key}>{_value(value[key])}</{key}>" for key in sorted(value))
    if isinstance(value, list):
        return "".join(f"<item>{_value(item)}</item>" for item in value)
    return _cdata(str(value))


def _cdata(text: str) -> str:
    """A CDATA section; an embedded ``]]>`` is split across two sections."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _attr(text: str) -> str:
    for raw, escaped in _ATTR_ESCAPES:
        text = text.replace(raw, escaped)
    return text
