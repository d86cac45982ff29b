"""The canonical request and event types: the only contract between the core
and the dialect plugins.

A plugin parses its dialect's JSON into a :class:`ChatRequest`, hands it to
the core, and renders the :data:`TurnEvent` stream it gets back. Nothing in
here knows any dialect's field names, and nothing in a plugin knows the
DeepSeek wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


# --------------------------------------------------------------------------
# Message parts
# --------------------------------------------------------------------------


@dataclass(slots=True)
class TextPart:
    """Plain text of the message's role."""

    text: str


@dataclass(slots=True)
class ReasoningPart:
    """Reasoning a client sent back with an assistant turn."""

    text: str


@dataclass(slots=True)
class AttachmentPart:
    """An image or file the client attached.

    ``data`` holds decoded inline bytes (uploaded to the web chat when the
    upstream allows it); ``url`` a remote or data URL that is not fetched;
    ``file_id`` an id of a file already uploaded upstream.
    """

    kind: Literal["image", "file"]
    mime_type: str | None = None
    name: str | None = None
    url: str | None = None
    data: bytes | None = None
    file_id: str | None = None
    # sha256 of ``data``, worked out once (see upstream.files.digest_of).
    digest: str | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class ToolCall:
    """A call the assistant made (history) or makes (output).

    ``arguments`` is the decoded JSON value when the client sent valid JSON,
    otherwise the raw text exactly as received.
    """

    id: str
    name: str
    arguments: Any = field(default_factory=dict)
    kind: Literal["function", "custom"] = "function"


@dataclass(slots=True)
class ToolResult:
    """The result of one tool call, sent back by the client.

    ``attachments`` holds images or files the tool returned (a screenshot,
    a read image); they are uploaded like any other attachment and named
    in the result's text.
    """

    call_id: str
    content: str
    name: str | None = None
    is_error: bool = False
    attachments: tuple[AttachmentPart, ...] = ()


Part = TextPart | ReasoningPart | AttachmentPart | ToolCall | ToolResult


@dataclass(slots=True)
class Message:
    """One normalised message. A ``tool`` message holds one ToolResult."""

    role: Role | str
    parts: list[Part] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def reasoning(self) -> str:
        return "\n".join(p.text for p in self.parts if isinstance(p, ReasoningPart))

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [p for p in self.parts if isinstance(p, ToolCall)]

    @property
    def tool_results(self) -> list[ToolResult]:
        return [p for p in self.parts if isinstance(p, ToolResult)]

    @property
    def attachments(self) -> list[AttachmentPart]:
        """Attachments in order, those inside tool results included."""
        found: list[AttachmentPart] = []
        for part in self.parts:
            if isinstance(part, AttachmentPart):
                found.append(part)
            elif isinstance(part, ToolResult):
                found.extend(part.attachments)
        return found


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------


@dataclass(slots=True)
class ToolSpec:
    """A declared tool. ``custom`` tools take one free-form text input."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    kind: Literal["function", "custom"] = "function"


@dataclass(slots=True)
class ToolChoice:
    """Normalised tool_choice policy.

    ``mode`` is auto | none | required | forced; ``name`` is set for forced;
    ``allowed`` restricts the tools that may be described and called.
    """

    mode: Literal["auto", "none", "required", "forced"] = "auto"
    name: str | None = None
    allowed: frozenset[str] | None = None


@dataclass(slots=True)
class ResponseFormat:
    """Structured-output request: plain text, any JSON object, a schema, or
    one of the ``enum`` values of ``schema`` (see :mod:`.enum_output`)."""

    type: Literal["text", "json_object", "json_schema", "enum"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None


# --------------------------------------------------------------------------
# Model and request
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A client model name mapped onto a native upstream model.

    ``requested`` is echoed back to the client; the rest drives the upstream.
    """

    requested: str
    native: str
    model_type: Literal["default", "expert", "vision"]
    thinking: bool
    search: bool
    force_no_thinking: bool = False


@dataclass(slots=True)
class ChatRequest:
    """One chat turn in canonical form, produced by a dialect's parser."""

    model: ResolvedModel
    messages: list[Message]
    stream: bool = False
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    thinking: bool | None = None
    include_usage: bool = False
    max_tokens: int | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    file_ids: list[str] = field(default_factory=list)

    @property
    def thinking_enabled(self) -> bool:
        """Effective thinking switch: a -nothinking model beats any override."""
        if self.model.force_no_thinking:
            return False
        return self.model.thinking if self.thinking is None else self.thinking


# --------------------------------------------------------------------------
# Turn events (what the core streams back to a plugin)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TextRun:
    """Several answer deltas as one event: exactly ``TextDelta(t)`` for each
    of ``texts`` (none empty), in order. Only a consumer that asked for
    runs gets one (the relay, for a renderer with ``text_runs``, and the
    turn's own ``collect``); it spares a long answer an object per delta on
    its hottest path. Plugins iterating a turn themselves never see one."""

    texts: list[str]

    def deltas(self) -> list[TextDelta]:
        return [TextDelta(text) for text in self.texts]


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A call begins. ``index`` counts calls across the whole response."""

    index: int
    id: str
    name: str
    kind: Literal["function", "custom"] = "function"


@dataclass(frozen=True, slots=True)
class ToolCallArgs:
    """The call's arguments as one JSON text of an object (custom: raw text)."""

    index: int
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    index: int


@dataclass(frozen=True, slots=True)
class Citation:
    """A web-search reference: ``index`` is the N of ``[reference:N]``."""

    index: int
    url: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0
    # Prompt tokens a provider read from its prompt cache (a part of
    # prompt_tokens); the web chat reports none.
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Finish:
    """How the turn ended; ``stop_sequence`` names the client's stop sequence
    that cut the answer (``reason`` is then "stop")."""

    reason: FinishReason
    stop_sequence: str | None = None


TurnEvent = (
    ReasoningDelta
    | TextDelta
    | TextRun
    | ToolCallStart
    | ToolCallArgs
    | ToolCallEnd
    | Citation
    | Usage
    | Finish
)


@dataclass(slots=True)
class CollectedCall:
    id: str
    name: str
    arguments: str
    kind: Literal["function", "custom"] = "function"


@dataclass(slots=True)
class TurnResult:
    """A whole turn, for non-stream responses (built from the same events)."""

    id: str
    text: str = ""
    reasoning: str = ""
    calls: list[CollectedCall] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    usage: Usage = field(default_factory=lambda: Usage(0, 0, 0))
    finish: FinishReason = "stop"
    stop_sequence: str | None = None
    # Text segments in wire order: ("text", str) or ("call", index).
    segments: list[tuple[str, Any]] = field(default_factory=list)
