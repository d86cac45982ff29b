"""A long conversation as one uploaded text file (prompt-compat §6).

The web chat reads an attached file in full, while a huge prompt is slow,
costly and may hit the input limit. So past a configured length the whole
conversation is written to a plain text file of numbered sections and the
live prompt only asks the model to carry on from it. Turns use the same
bodies as the live prompt (:mod:`message_text`): a past tool call looks
exactly like the calls the model is asked to write, wherever it reads it.
"""

from __future__ import annotations

import re

from ds2proxy.canonical import Message, TextPart, ToolResult
from ds2proxy.prompt.build import build_prompt
from ds2proxy.prompt.message_text import assistant_text, plain_text, tool_result_text

DESCRIPTION = "Prior conversation history and tool progress."
# A line of a turn's text shaped like a section header (it would start a
# forged section, e.g. a SYSTEM one inside a tool result).
_HEADER_LIKE = re.compile(r"^(?=[ \t]*=+[ \t]*\d+[ \t]*\.)", re.MULTILINE)


def render_history_file(messages: list[Message], file_name: str) -> str:
    """The file's text: a title, then one numbered ``=== N. ROLE ===``
    section per non-blank entry, oldest first."""
    lines = [f"# {file_name}", DESCRIPTION, ""]
    # Some dialects send a result with its call id only; the call names the tool.
    names = {call.id: call.name for m in messages for call in m.tool_calls if call.id}
    entries = [entry for message in messages for entry in _entries(message, names)]
    for number, (role, text) in enumerate(entries, 1):
        lines += [f"=== {number}. {role.upper()} ===", _HEADER_LIKE.sub("> ", text)]
    return "\n".join(lines) + "\n"


def continuation_request(file_name: str) -> str:
    """The one user message the live prompt carries instead of the history."""
    return (f"The attached file {file_name} holds this conversation so far: instructions, "
            "messages, tool calls and tool results in numbered sections, oldest first. "
            "Follow the instructions it contains, continue from the latest state recorded "
            "in it and answer the latest request directly, without summarising or quoting "
            "the file.")


def continuation_prompt(file_name: str, *, tool_prompt: str = "",
                        thinking_injection: str = "") -> str:
    """The short live prompt sent with the file; the tool prompt and the
    thinking injection stay in it, where the model expects control text."""
    request = Message("user", [TextPart(continuation_request(file_name))])
    return build_prompt([request], tool_prompt=tool_prompt,
                        thinking_injection=thinking_injection)


def _entries(message: Message, names: dict[str, str]) -> list[tuple[str, str]]:
    """(role, text) entries of one message; tool results first so they
    follow the call they answer, blank texts left out."""
    results = message.tool_results
    if message.role == "tool" and not results:
        results = [ToolResult(call_id="", content=plain_text(message))]
    entries = [("tool", _tool_entry(result, names)) for result in results]
    if message.role == "tool":
        return entries
    text = assistant_text(message) if message.role == "assistant" else plain_text(message)
    if text.strip():
        entries.append((message.role, text.strip()))
    return entries


def _tool_entry(result: ToolResult, names: dict[str, str]) -> str:
    """A result under a line naming its tool and call. Its body is never
    blank (an empty result reads ``null``), so the tool turn stays visible."""
    name = result.name or names.get(result.call_id) or "unknown"
    header = f"[name={name} tool_call_id={result.call_id or 'unknown'}]"
    return f"{header}\n{tool_result_text(result)}"
