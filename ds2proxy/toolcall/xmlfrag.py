"""Nested parameter values written as XML child elements.

The model is told to write objects as child elements and arrays as repeated
``<item>`` children, so a parameter body such as
``<item><question>…</question><multiSelect>false</multiSelect></item>`` must
come back as ``[{"question": …, "multiSelect": false}]``. The reader is
deliberately small and strict: anything that is not well-formed stays text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ds2proxy.toolcall.jsonfix import json_value

# Values written as elements nest a few levels; deeper markup stays text, so
# the recursive readers below (and a JSON leaf inside) stay far from the
# recursion limit.
MAX_ELEMENT_DEPTH = 32

_TOKEN = re.compile(
    r"<!\[CDATA\[(?P<cdata>.*?)\]\]>"
    r"|<!--.*?-->"
    r"|</\s*(?P<close>[A-Za-z_][\w.\-:]*)\s*>"
    r"|<(?P<open>[A-Za-z_][\w.\-:]*)(?:\s+[^<>]*?)?\s*(?P<empty>/?)>"
    r"|(?P<text>[^<]+)",
    re.DOTALL,
)


@dataclass(slots=True)
class Element:
    name: str
    children: list[Element | str | CData] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CData:
    text: str


Node = Element | str | CData


def parse_fragment(text: str) -> list[Node] | None:
    """Top-level nodes of a well-formed fragment, or None."""
    root = Element("")
    stack = [root]
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            return None
        pos = match.end()
        if not _apply(match, stack) or len(stack) > MAX_ELEMENT_DEPTH + 1:
            return None
    return root.children if len(stack) == 1 else None


def _apply(match: re.Match[str], stack: list[Element]) -> bool:
    kind = next((k for k in ("close", "open", "cdata", "text") if match.group(k) is not None), "")
    if kind == "close":
        if len(stack) == 1 or stack[-1].name != match.group("close"):
            return False
        stack.pop()
    elif kind == "open":
        element = Element(match.group("open"))
        stack[-1].children.append(element)
        if not match.group("empty"):
            stack.append(element)
    elif kind == "cdata":
        stack[-1].children.append(CData(match.group("cdata")))
    elif kind == "text":
        stack[-1].children.append(match.group("text"))
    return True


def is_structure(nodes: list[Node]) -> bool:
    """Elements at the top level and no loose text between them."""
    return any(isinstance(n, Element) for n in nodes) and not _loose_text(nodes)


def is_clearly_structured(nodes: list[Node]) -> bool:
    """Structure that cannot be mistaken for markup inside a string: two or
    more elements, one element with children, or a single ``<item>``."""
    if not is_structure(nodes):
        return False
    elements = [n for n in nodes if isinstance(n, Element)]
    if len(elements) > 1:
        return True
    only = elements[0]
    return only.name == "item" or any(isinstance(c, Element) for c in only.children)


def content_value(nodes: list[Node]) -> Any:
    """Value of an element's content: text or literal, list of items, or object."""
    elements = [n for n in nodes if isinstance(n, Element)]
    if not elements:
        return _text_value(nodes)
    text = _loose_text(nodes)
    if all(e.name == "item" for e in elements) and not text:
        return [content_value(e.children) for e in elements]
    result = group_repeated((e.name, content_value(e.children)) for e in elements)
    if text:
        result["_text"] = text
    return result


def group_repeated(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Key → value; a key given more than once → the list of its values."""
    grouped: dict[str, list[Any]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return {key: values[0] if len(values) == 1 else values for key, values in grouped.items()}


def _loose_text(nodes: list[Node]) -> str:
    return "".join(n for n in nodes if isinstance(n, str)).strip()


def _text_value(nodes: list[Node]) -> Any:
    """Only text: a JSON literal when it is one, else the text."""
    if any(isinstance(n, CData) for n in nodes):
        text = "".join(n.text if isinstance(n, CData) else n.strip() for n in nodes)
    else:
        text = "".join(n for n in nodes if isinstance(n, str)).strip()
    ok, value = json_value(text)
    return value if ok and text else text
