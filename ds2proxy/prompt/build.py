"""Canonical messages → the one prompt string the web chat receives.

The upstream takes a single user text per turn, so the whole conversation —
instructions, history, tool rounds — is laid out in DeepSeek's own template
markers as plain text, and the model reads the role structure back out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ds2proxy.canonical import Message, ToolResult
from ds2proxy.prompt import markers
from ds2proxy.prompt.message_text import (
    assistant_text,
    plain_text,
    HEADER_START,
    tool_result_header,
    tool_result_text,
)


@dataclass(slots=True)
class _Entry:
    """One message reduced to its role and either text or one tool result."""

    role: str
    text: str = ""
    result: ToolResult | None = None


@dataclass(slots=True)
class _Block:
    """Consecutive entries of one role, rendered under one marker."""

    role: str
    entries: list[_Entry] = field(default_factory=list)


def build_prompt(
    messages: list[Message], *, tool_prompt: str = "", thinking_injection: str = ""
) -> str:
    """Flatten a conversation into the upstream prompt.

    ``tool_prompt`` joins the first system message (or opens one at the
    front); ``thinking_injection`` is appended once to the latest user turn,
    where DeepSeek follows control text most reliably.
    """
    # OpenAI Chat results carry only the call id; the call names the tool.
    names = {call.id: call.name for m in messages for call in m.tool_calls if call.id}
    entries = [entry for message in messages for entry in _entries(message, names)]
    _add_tool_prompt(entries, tool_prompt.strip())
    _add_injection(entries, thinking_injection.strip())
    _add_guard(entries)
    # Markers and texts are joined once: a long conversation is copied into
    # the prompt a single time, not once per marker added.
    pieces = [markers.BEGIN]
    last_role = ""
    for block in _merge(entries):
        if rendered := _render_block(block):
            pieces += rendered
            last_role = block.role
    if last_role != "assistant":
        pieces.append(markers.ASSISTANT)
    return plain_links("".join(pieces))


def _entries(message: Message, names: dict[str, str]) -> list[_Entry]:
    """A message's entries; tool results come first so they follow the call."""
    results = [_named(result, names) for result in message.tool_results]
    if message.role == "tool":
        if not results:
            results = [ToolResult(call_id="", content=plain_text(message))]
        return [_Entry("tool", result=result) for result in results]
    entries = [_Entry("tool", result=result) for result in results]
    text = assistant_text(message) if message.role == "assistant" else plain_text(message)
    keep_empty = message.role in ("system", "user") and not results
    if text or keep_empty:
        entries.append(_Entry(message.role, text))
    return entries


def _named(result: ToolResult, names: dict[str, str]) -> ToolResult:
    """``result`` with the name of the call it answers when it has none."""
    if result.name or result.call_id not in names:
        return result
    return replace(result, name=names[result.call_id])


def _add_tool_prompt(entries: list[_Entry], tool_prompt: str) -> None:
    if not tool_prompt:
        return
    for entry in entries:
        if entry.role == "system":
            entry.text = _join([entry.text, tool_prompt])
            return
    entries.insert(0, _Entry("system", tool_prompt))


def _add_injection(entries: list[_Entry], injection: str) -> None:
    if not injection:
        return
    for entry in reversed(entries):
        if entry.role == "user":
            if injection not in entry.text:
                entry.text = _join([entry.text, injection])
            return


def _add_guard(entries: list[_Entry]) -> None:
    first = entries[0] if entries else None
    if first is None or first.role != "system" or markers.GUARD_LABEL not in first.text:
        entries.insert(0, _Entry("system", markers.GUARD_TEXT))


def _merge(entries: list[_Entry]) -> list[_Block]:
    blocks: list[_Block] = []
    for entry in entries:
        if not blocks or blocks[-1].role != entry.role:
            blocks.append(_Block(entry.role))
        blocks[-1].entries.append(entry)
    return blocks


def _render_block(block: _Block) -> list[str]:
    """The block's pieces with its markers; none when the role omits an empty block."""
    if block.role == "tool":
        return [markers.TOOL, markers.defuse(_tool_block_text(block)), markers.END_TOOL_RESULTS]
    text = markers.defuse(_join([entry.text for entry in block.entries]))
    if block.role == "system":
        text = text.strip()
        return [markers.SYSTEM, text, markers.END_INSTRUCTIONS] if text else []
    if block.role == "user":
        return [markers.USER, text]
    if block.role == "assistant":
        return [markers.ASSISTANT, text, markers.END_SENTENCE]
    return [text] if text else []


def _tool_block_text(block: _Block) -> str:
    """Results joined by blank lines; headed by name and id when several."""
    results = [entry.result for entry in block.entries if entry.result is not None]
    texts = [tool_result_text(result) for result in results]
    if len(results) > 1:
        texts = [f"{tool_result_header(r)}\n{_quote_headers(t)}" for r, t in zip(results, texts)]
    return _join(texts)


def _quote_headers(text: str) -> str:
    """A result's lines shaped like a result header, quoted with ``> ``: a
    fetched page could otherwise head its tail as another call's result."""
    if HEADER_START not in text:
        return text
    return "\n".join(f"> {line}" if line.lstrip().startswith(HEADER_START) else line
                     for line in text.split("\n"))


def _join(texts: list[str]) -> str:
    return "\n\n".join(text for text in texts if text)


def plain_links(text: str) -> str:
    """Markdown images ``![alt](url)`` as plain links ``[alt](url)`` (the web
    chat would try to show or fetch them). ``alt`` holds no ``]``, the URL no
    ``)``, neither a line break.

    One pass with each search's result kept while it is still ahead: a
    regular expression retried at every ``![`` rescans the rest of the
    line each time, and a long line of ``![`` (a crafted message, a tool
    result) held the event loop for minutes.
    """
    out: list[str] = []
    last = 0
    newline = close = paren = -2  # the next "\n", "]" and ")" found (-1: none left)
    at = text.find("![")
    while at >= 0:
        if newline != -1 and newline < at:
            newline = text.find("\n", at)
        if close != -1 and close < at + 2:
            close = text.find("]", at + 2)
        if close == -1:
            break  # no "]" after this "![", nor after any later one
        if (newline == -1 or close < newline) and text.startswith("(", close + 1):
            if paren != -1 and paren < close + 2:
                paren = text.find(")", close + 2)
            if paren == -1:
                break
            if newline == -1 or paren < newline:
                out.append(text[last:at])
                last = at + 1  # the "!" goes
                at = text.find("![", paren + 1)
                continue
        at = text.find("![", at + 1)
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)
