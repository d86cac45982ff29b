"""The tool prompt (§1): what the model is told about tools and call syntax.

DeepSeek's web chat has no function calling, so the tools and an exact
output format go into the system prompt. The format is DeepSeek's own DSML
markup, which the model follows far more reliably than ad-hoc JSON.
"""

from __future__ import annotations

import re

from ds2proxy.canonical import ToolChoice, ToolSpec
from ds2proxy.toolcall.examples import (
    EXECUTORS,
    NESTED,
    READERS,
    WRITERS,
    declared_shapes,
    render_block,
    script_call,
)
from ds2proxy.toolcall.invoke import CUSTOM_INPUT
from ds2proxy.toolcall.names import allowed_tools
from ds2proxy.toolcall.schema import compact_json

_SKELETON = """<|DSML|tool_calls>
  <|DSML|invoke name="TOOL_NAME_HERE">
    <|DSML|parameter name="PARAMETER_NAME"><![CDATA[PARAMETER_VALUE]]></|DSML|parameter>
  </|DSML|invoke>
</|DSML|tool_calls>"""

_RULES = """RULES:
1. Wrap tool calls in <|DSML|tool_calls> … </|DSML|tool_calls> exactly as shown.
2. Put one or more <|DSML|invoke> elements under a single wrapper, one per call.
3. Write the tool name in the name attribute of <|DSML|invoke>.
4. Put every string value in CDATA, even short ones: code, scripts, file contents, prompts, paths, names and queries.
5. Use one <|DSML|parameter> element per top-level argument.
6. Write objects as nested child elements and arrays as repeated <item> children.
7. Write numbers, booleans and null as plain text.
8. Use only parameter names from the tool's schema; never invent one.
9. No Markdown code fences, no explanations, no role markers and no inner monologue in or around the tool block.
10. The tool block must start with the opening <|DSML|tool_calls> tag; never leave it out, even when you plan to close it.
11. The plain tags <tool_calls>, <invoke> and <parameter> are accepted, but prefer the DSML form."""

_SHAPES = """PARAMETER SHAPES:
- string → <|DSML|parameter name="x"><![CDATA[text]]></|DSML|parameter>
- object → <|DSML|parameter name="x"><key><![CDATA[value]]></key></|DSML|parameter>
- array → <|DSML|parameter name="x"><item><![CDATA[a]]></item><item><![CDATA[b]]></item></|DSML|parameter>
- number, boolean, null → <|DSML|parameter name="x">42</|DSML|parameter>"""

_WRONG = """WRONG — text after the tool block:
<|DSML|tool_calls>
  <|DSML|invoke name="TOOL_NAME_HERE"></|DSML|invoke>
</|DSML|tool_calls>
I have called the tool.

WRONG — the tool block inside a Markdown fence:
```xml
<|DSML|tool_calls>
  <|DSML|invoke name="TOOL_NAME_HERE"></|DSML|invoke>
</|DSML|tool_calls>
```

WRONG — an invoke with a closing wrapper but no opening wrapper:
  <|DSML|invoke name="TOOL_NAME_HERE"></|DSML|invoke>
</|DSML|tool_calls>

The only valid way to use a tool is this wrapper block at the end of your response."""

_READ_GUARD = (
    "READ RESULTS: if a read result says the file is unchanged, already in context, or has "
    "no body, treat the content as missing. Do not repeat the same read; ask for a full "
    "read or tell the user that the content is needed."
)
_NORMALISED_READ = re.compile(r"[^0-9a-z]")


def build_tool_prompt(tools: list[ToolSpec], choice: ToolChoice, *,
                      single_call: bool = False) -> str:
    """The prompt text for the tools ``choice`` allows; "" when there are none."""
    described = [t for t in allowed_tools(tools, choice) if t.name]
    if not described:
        return ""
    sections = [
        "You have access to these tools:\n\n" + "\n\n".join(map(_describe, described)),
        "TOOL CALL FORMAT — FOLLOW EXACTLY:\n\n" + _SKELETON,
        _RULES,
        _SHAPES,
        _WRONG,
        *_examples(described),
        *_extras(described, choice, single_call),
    ]
    return "\n\n".join(sections)


def _describe(tool: ToolSpec) -> str:
    lines = [f"Tool: {tool.name}", f"Description: {tool.description.strip() or 'No description available'}"]
    if tool.kind == "custom":
        schema = {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string"}},
                  "required": [CUSTOM_INPUT]}
        lines.append(f"Parameters: {compact_json(schema)}")
        lines.append(f'Input: free-form text. This tool takes ONE text parameter named '
                     f'"{CUSTOM_INPUT}"; put the whole raw text in it as CDATA.')
    else:
        lines.append(f"Parameters: {compact_json(tool.parameters)}")
    return "\n".join(lines)


def _examples(tools: list[ToolSpec]) -> list[str]:
    """Correct examples (A)–(D), each only when a declared tool fits it."""
    simple = declared_shapes(tools, READERS + EXECUTORS + WRITERS)
    if not simple:
        return []
    found = [("A) one call", render_block(simple[:1]))]
    found.append(("B) two calls in one wrapper", render_block((simple * 2)[:2])))
    nested = declared_shapes(tools, NESTED)
    if nested:
        found.append(("C) nested parameters", render_block(nested[:1])))
    executors = declared_shapes(tools, EXECUTORS)
    if executors:
        found.append(("D) a long script, in the command parameter, in CDATA",
                      render_block([script_call(executors[0])])))
    body = "\n\n".join(f"({title}:\n{block}" for title, block in found)
    return ["CORRECT EXAMPLES (these tools are declared in this request):\n\n" + body]


def _extras(tools: list[ToolSpec], choice: ToolChoice, single_call: bool) -> list[str]:
    extras = []
    if any(_NORMALISED_READ.sub("", t.name.lower()) in ("read", "readfile") for t in tools):
        extras.append(_READ_GUARD)
    if choice.mode == "required":
        extras.append("For this response you MUST call at least one tool from the allowed list.")
    elif choice.mode == "forced":
        extras.append(f"For this response you MUST call exactly this tool: {choice.name}. "
                      "Do not call any other tool.")
    if single_call:
        extras.append("Call at most one tool in this response.")
    return extras
