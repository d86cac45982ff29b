"""The text body of each canonical message, before role markers are added.

Kept apart from the marker layout so the long-history file (which numbers
and labels turns instead of using markers) renders turns the same way.
"""

from __future__ import annotations

from ds2proxy.canonical import AttachmentPart, Message, TextPart, ToolResult
from ds2proxy.prompt.dsml import render_tool_calls

REASONING_OPEN = "[reasoning_content]"
REASONING_CLOSE = "[/reasoning_content]"
TOOL_ERROR_LINE = "[tool error]"
EMPTY_RESULT = "null"
HEADER_START = "[tool_result "


def attachment_placeholder(part: AttachmentPart) -> str:
    """A short mention of an attachment, never its bytes.

    A client's reference to an upstream file (``file_id`` only) is attached
    to the turn and needs no mention. A payload the gateway uploaded (bytes
    and the ``file_id`` they became) is named with its id, so the model can
    tell the attached files apart. Anything else (remote URLs, payloads not
    uploaded) becomes ``[image: …]`` / ``[file: …]`` so the model knows
    something was sent; data URLs are never copied.
    """
    if part.file_id and part.data is None:
        return ""
    url = part.url if part.url and not part.url.startswith("data:") else None
    if part.kind == "file":
        label = part.name or part.mime_type or url or _data_url_mime(part.url)
    else:
        label = part.mime_type or url or _data_url_mime(part.url)
    if part.file_id:
        return f"[{part.kind}: {label + ', ' if label else ''}attached as {part.file_id}]"
    return f"[{part.kind}: {label or 'attached'}]"


def _data_url_mime(url: str | None) -> str | None:
    if not url or not url.startswith("data:"):
        return None
    mime = url[5:].split(",", 1)[0].split(";", 1)[0]
    return mime or None


def plain_text(message: Message) -> str:
    """Text parts and attachment placeholders in their original order."""
    pieces: list[str] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, AttachmentPart) and (placeholder := attachment_placeholder(part)):
            pieces.append(placeholder)
    return "\n".join(pieces)


def assistant_text(message: Message) -> str:
    """Reasoning block, visible text and DSML calls, blank-line separated;
    "" when the turn carries nothing worth showing."""
    reasoning = message.reasoning.strip()
    sections = [
        f"{REASONING_OPEN}\n{reasoning}\n{REASONING_CLOSE}" if reasoning else "",
        plain_text(message).strip(),
        render_tool_calls(message.tool_calls),
    ]
    return "\n\n".join(section for section in sections if section)


def tool_result_text(result: ToolResult) -> str:
    """A result's content, then a line naming each attachment it returned;
    a result with neither becomes ``null`` so the tool turn stays visible."""
    mentions = [m for m in map(attachment_placeholder, result.attachments) if m]
    content = "\n".join(p for p in (result.content, *mentions) if p.strip()) or EMPTY_RESULT
    return f"{TOOL_ERROR_LINE}\n{content}" if result.is_error else content


def tool_result_header(result: ToolResult) -> str:
    """The line that keeps one of several parallel results attributable."""
    return f"{HEADER_START}name={result.name or 'unknown'} id={result.call_id or 'unknown'}]"
