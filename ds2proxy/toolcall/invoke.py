"""One ``invoke`` element → a checked call, or nothing.

A call is kept only when its name resolves to an allowed tool and its
arguments are not all empty; its arguments are then brought in line with the
declared schema. Custom (free-form) tools get their single text input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from ds2proxy.canonical import ToolChoice, ToolSpec
from ds2proxy.toolcall.cdata import section_content, whole_section
from ds2proxy.toolcall.jsonfix import loads_lenient
from ds2proxy.toolcall.names import NameMatcher, allowed_tools
from ds2proxy.toolcall.schema import compact_json, conform, is_string_schema, property_schema
from ds2proxy.toolcall.tags import PARAMETER, Tag
from ds2proxy.toolcall.tokens import Tokens
from ds2proxy.toolcall.values import Segment, parameter_value
from ds2proxy.toolcall.xmlfrag import group_repeated

log = logging.getLogger("ds2proxy.toolcall")

CUSTOM_INPUT = "input"
_CUSTOM_SCHEMA = {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string"}}}


@dataclass(frozen=True, slots=True)
class InvokeSpan:
    """An ``invoke`` element: its tags; ``close`` is None while unfinished."""

    open: Tag
    close: Tag | None
    inner: tuple[Tag, ...] = field(default_factory=tuple)

    @property
    def written_name(self) -> str:
        return self.open.attrs.get("name", "").strip()


@dataclass(frozen=True, slots=True)
class Call:
    """A call ready to emit: ``arguments`` is JSON text (custom: raw text)."""

    name: str
    arguments: str
    kind: Literal["function", "custom"] = "function"


class CallBuilder:
    """Turns invoke elements into calls against the request's allowed tools."""

    def __init__(self, tools: list[ToolSpec], choice: ToolChoice) -> None:
        self._names = NameMatcher(allowed_tools(tools, choice))

    def tool_for(self, span: InvokeSpan) -> ToolSpec | None:
        return self._names.resolve(span.written_name)

    def explain_refusal(self, span: InvokeSpan) -> None:
        """Log why a finished invoke gave no call (names are not secrets)."""
        if self.tool_for(span) is None:
            log.info("tool call to undeclared or disallowed tool %r rejected", span.written_name)
        else:
            log.info("tool call to %r dropped: no usable arguments", span.written_name)

    def build(self, text: str, span: InvokeSpan, tokens: Tokens) -> Call | None:
        """The call written by a finished invoke, or None when it does not count."""
        tool = self.tool_for(span)
        if tool is None or span.close is None:
            return None
        params = _parameters(span)
        if params is None:
            return None
        body = segments_between(text, tokens, span.open.end, span.close.start)
        if tool.kind == "custom":
            return _custom_call(tool, text, tokens, params, body)
        args = _arguments(tool.parameters, text, tokens, params, body)
        if args is None or ((params or args) and _all_empty(args)):
            return None
        return Call(tool.name, compact_json(conform(args, tool.parameters)))


def _parameters(span: InvokeSpan) -> list[tuple[Tag, Tag | None]] | None:
    """(open, close) of each top-level parameter (close None: self-closing);
    None when the parameters do not nest properly."""
    if span.open.self_closing:
        return []
    result: list[tuple[Tag, Tag | None]] = []
    depth = 0
    opened: Tag | None = None
    for tag in span.inner:
        if tag.name != PARAMETER:
            continue
        if not tag.closing and tag.self_closing:
            if depth == 0:
                result.append((tag, None))
        elif not tag.closing:
            opened = tag if depth == 0 else opened
            depth += 1
        elif depth == 0:
            return None
        else:
            depth -= 1
            if depth == 0 and opened is not None:
                result.append((opened, tag))
    return result if depth == 0 else None


def segments_between(text: str, tokens: Tokens, start: int, end: int) -> list[Segment]:
    """``text[start:end]`` split into plain text and CDATA contents."""
    whole = whole_section(text[start:end].strip())
    if whole is not None:
        return [Segment(whole, cdata=True)]
    segments: list[Segment] = []
    pos = start
    for span in tokens.cdata:
        if span.start < start or span.end > end:
            continue
        segments.append(Segment(text[pos:span.start]))
        inner = text[span.content_start:span.content_end]
        segments.append(Segment(_or(section_content(inner), inner), cdata=True))
        pos = span.end
    segments.append(Segment(text[pos:end]))
    return segments


def _or(value: str | None, default: str) -> str:
    return default if value is None else value


def _arguments(schema: Any, text: str, tokens: Tokens,
               params: list[tuple[Tag, Tag | None]], body: list[Segment]) -> Any:
    if not params:
        return _body_arguments(body)
    named = [(t.attrs.get("name", "").strip(), t, close) for t, close in params]
    return group_repeated(
        (name, _value_of(name, t, close, text, tokens, property_schema(schema, name), schema))
        for name, t, close in named if name
    )


def _value_of(name: str, open_tag: Tag, close_tag: Tag | None, text: str, tokens: Tokens,
              schema: Any, root: Any) -> Any:
    if close_tag is None:
        return ""
    hint = open_tag.attrs.get("string", "").strip().lower()
    raw = hint == "true" or (hint != "false" and is_string_schema(schema, root))
    segments = segments_between(text, tokens, open_tag.end, close_tag.start)
    return parameter_value(name, segments, raw=raw)


def _body_arguments(body: list[Segment]) -> dict[str, Any] | None:
    """Arguments of an invoke without parameters: none, or a JSON object body."""
    raw = "".join(s.text for s in body).strip()
    if not raw:
        return {}
    if raw[0] != "{":
        return None
    ok, value = loads_lenient(raw)
    if not ok:
        return {"_raw": raw}
    if not isinstance(value, dict):
        return None
    for key in ("input", "parameters"):
        if isinstance(value.get(key), dict):
            return value[key]
    return {}


def _custom_call(tool: ToolSpec, text: str, tokens: Tokens,
                 params: list[tuple[Tag, Tag | None]], body: list[Segment]) -> Call | None:
    """A free-form tool's one text input: the ``input`` parameter, a lone
    parameter of another name, or the invoke's own text."""
    if params:
        args = _arguments(_CUSTOM_SCHEMA, text, tokens, params, body) or {}
        if CUSTOM_INPUT in args:
            value = args[CUSTOM_INPUT]
        elif len(args) == 1:
            (value,) = args.values()
        else:
            return None
    else:
        value = parameter_value(CUSTOM_INPUT, body, raw=True)
    if not isinstance(value, str):
        value = compact_json(value)
    return Call(tool.name, value, "custom") if value.strip() else None


def _all_empty(value: Any) -> bool:
    """Blank strings, nulls and containers of nothing else."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, dict):
        return all(_all_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_empty(v) for v in value)
    return False

