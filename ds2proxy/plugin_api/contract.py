"""The plugin contract: every type a dialect plugin may name.

This module holds types only (constants, protocols, re-exported canonical
types and errors); the object a plugin receives is
:class:`ds2proxy.plugin_api.context.PluginContext`, and loading lives in
:mod:`ds2proxy.plugin_api.loader`. Plugins import these names from
:mod:`ds2proxy.plugin_api`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from ..auth import Caller
from ..canonical import (
    AttachmentPart,
    ChatRequest,
    Citation,
    CollectedCall,
    Finish,
    FinishReason,
    Message,
    Part,
    ReasoningDelta,
    ReasoningPart,
    ResolvedModel,
    ResponseFormat,
    Role,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    ToolSpec,
    TurnEvent,
    TurnResult,
    Usage,
)
from ..embeddings import DEFAULT_DIMENSIONS, EmbeddingProvider
from ..error_bodies import (
    ErrorStyle,
    anthropic_error,
    anthropic_error_body,
    google_error,
    google_error_body,
    ollama_error,
    openai_error,
    openai_error_body,
)
from ..errors import (
    AuthenticationFailed,
    ContentFiltered,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    NotImplementedFeature,
    PayloadTooLarge,
    PermissionDenied,
    ProxyError,
    RateLimited,
)
from ..models import NativeModel
from ..ndjson import Heartbeat, NDJSONWriter
from ..relay import Renderer
from ..sse import ClientGone, JSONArrayWriter, SSEWriter, StreamWriter

# The contract's version, "major.minor". A plugin built for "1.x" loads on
# any 1.y with y >= x; a new major version breaks plugins on purpose.
API_VERSION = "1.0"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Predicate = Callable[[web.Request], bool]
Hook = Callable[[], Awaitable[None]]
# A plugin's settings check: its ``plugins.<name>`` object → problems by field
# (empty when valid). Run on every config write before anything is saved.
SettingsCheck = Callable[[Mapping[str, Any]], Mapping[str, str]]
SettingsListener = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class ErrorStyles:
    """Each family's HTTP error shape, for ``api.route(..., errors=...)``."""

    openai: ErrorStyle
    anthropic: ErrorStyle
    google: ErrorStyle
    ollama: ErrorStyle


ERROR_STYLES = ErrorStyles(openai=openai_error, anthropic=anthropic_error,
                           google=google_error, ollama=ollama_error)


class Turn(Protocol):
    """An open turn (``async with api.turn(chat, caller) as turn``)."""

    @property
    def id(self) -> str:
        """The turn's id (the upstream session once opened)."""
        ...

    @property
    def created(self) -> int:
        """When it began, Unix seconds."""
        ...

    @property
    def prompt_tokens(self) -> int:
        """The prompt tokens it reports."""
        ...

    def events(self) -> AsyncIterator[TurnEvent]:
        """Canonical events one by one."""
        ...

    def batches(self) -> AsyncIterator[list[TurnEvent]]:
        """Canonical events, a batch per upstream read (what the relay reads)."""
        ...

    async def collect(self) -> TurnResult:
        """The whole answer (non-stream routes)."""
        ...


@dataclass(frozen=True, slots=True)
class ListedModel:
    """An entry of the model lists: its id and the native model serving it
    (the id is the native's own unless a plugin registered it)."""

    id: str
    native: NativeModel


class ModelCatalogue(Protocol):
    """The model catalogue, read-only."""

    def natives(self) -> list[NativeModel]:
        """Every native model, in list order."""
        ...

    def native(self, model_id: str) -> NativeModel | None:
        """The native model with this id, if any."""
        ...

    def listed(self) -> list[ListedModel]:
        """What model lists show: the natives, then plugin-registered ids."""
        ...

    def aliases(self) -> dict[str, str]:
        """Every alias → native id (built in, configured, plugin-registered)."""
        ...

    def configured_aliases(self) -> dict[str, str]:
        """The aliases the operator configured (``models.aliases``)."""
        ...


class StoredEntry(Protocol):
    """One stored response and the conversation a follow-up continues."""

    @property
    def response(self) -> dict[str, Any]:
        ...

    @property
    def input_items(self) -> list[Any]:
        """The items the response answered (its stored history included)."""
        ...

    @property
    def history(self) -> list[Any]:
        ...


class StoredResponses(Protocol):
    """The store several instances share for ``/v1/responses`` (owner-scoped,
    expiring with ``responses.store_ttl_seconds``)."""

    async def keep(self, owner: str, response: dict[str, Any], input_items: list[Any]) -> None:
        ...

    async def fetch(self, owner: str, response_id: str) -> StoredEntry | None:
        ...

    async def drop(self, owner: str, response_id: str) -> bool:
        ...


__all__ = [
    "API_VERSION", "DEFAULT_DIMENSIONS", "ERROR_STYLES",
    "AttachmentPart", "AuthenticationFailed", "Caller", "ChatRequest", "Citation",
    "ClientGone", "CollectedCall", "ContentFiltered", "EmbeddingProvider", "ErrorStyle",
    "ErrorStyles", "Finish", "FinishReason", "Handler", "Heartbeat", "Hook",
    "InvalidRequest", "JSONArrayWriter", "ListedModel", "Message", "ModelCatalogue",
    "ModelNotFound", "NDJSONWriter", "NativeModel", "NotFound", "NotImplementedFeature",
    "Part", "PayloadTooLarge", "PermissionDenied", "Predicate", "ProxyError", "RateLimited",
    "ReasoningDelta", "ReasoningPart", "Renderer", "ResolvedModel", "ResponseFormat", "Role",
    "SSEWriter", "SettingsCheck", "SettingsListener", "StoredEntry", "StoredResponses",
    "StreamWriter", "TextDelta",
    "TextPart", "ToolCall", "ToolCallArgs", "ToolCallEnd", "ToolCallStart", "ToolChoice",
    "ToolResult", "ToolSpec", "Turn", "TurnEvent", "TurnResult", "Usage",
    "anthropic_error_body", "google_error_body", "openai_error_body",
]
