"""What the API fuzz test sends: every API route with a valid base body,
the field paths worth breaking, and hypothesis strategies for bad values.

Bodies are built as Python values and written as JSON text by :func:`encode`,
which also writes :class:`Deep` markers as nesting far past what any JSON
library would serialise (up to past orjson's own parse limit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Deep:
    """``depth`` nested lists (or objects) around one value."""

    depth: int
    brace: bool = False


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    family: str                          # openai | anthropic | google | ollama
    body: dict[str, Any] | None = None   # a valid body (None: no body)
    paths: tuple[Path, ...] = ()         # fields to break
    query: str = ""
    segment: str | None = None           # a path segment to fuzz instead of a body
    extra_headers: dict[str, str] = field(default_factory=dict)


def _paths(*dotted: str) -> tuple[Path, ...]:
    return tuple(tuple(int(p) if p.isdigit() else p for p in d.split(".")) for d in dotted)


SAMPLING_OPENAI = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "stop",
                   "stop.0", "max_tokens", "max_completion_tokens", "n", "seed", "logprobs",
                   "top_logprobs", "stream", "stream_options", "stream_options.include_usage",
                   "parallel_tool_calls", "user", "metadata", "metadata.k", "logit_bias",
                   "store", "reasoning_effort", "thinking", "extra_body")
CHAT_SHAPE = ("model", "messages", "messages.0", "messages.0.role", "messages.0.content",
              "messages.0.content.0", "messages.0.content.0.type", "messages.0.content.0.text",
              "messages.0.content.0.image_url", "messages.0.tool_calls",
              "messages.0.tool_calls.0.function", "messages.0.name", "messages.0.tool_call_id",
              "tools", "tools.0", "tools.0.function", "tools.0.function.name",
              "tools.0.function.parameters", "tool_choice", "tool_choice.function",
              "response_format", "response_format.type", "response_format.json_schema",
              "response_format.json_schema.schema")
ANTHROPIC = ("model", "max_tokens", "messages", "messages.0", "messages.0.role",
             "messages.0.content", "messages.0.content.0", "messages.0.content.0.type",
             "messages.0.content.0.text", "messages.0.content.0.source",
             "messages.0.content.0.input", "messages.0.content.0.content", "system",
             "system.0", "system.0.text", "temperature", "top_p", "top_k", "stop_sequences",
             "stop_sequences.0", "stream", "metadata", "metadata.user_id", "tools", "tools.0",
             "tools.0.input_schema", "tool_choice", "tool_choice.type", "thinking",
             "thinking.budget_tokens", "output_format", "container")
GEMINI = ("contents", "contents.0", "contents.0.role", "contents.0.parts",
          "contents.0.parts.0", "contents.0.parts.0.text", "contents.0.parts.0.thought",
          "contents.0.parts.0.inlineData", "contents.0.parts.0.inlineData.data",
          "contents.0.parts.0.functionCall", "contents.0.parts.0.functionResponse",
          "contents.0.parts.0.executableCode", "systemInstruction",
          "systemInstruction.parts", "generationConfig", "generationConfig.temperature",
          "generationConfig.topP", "generationConfig.topK", "generationConfig.maxOutputTokens",
          "generationConfig.stopSequences", "generationConfig.candidateCount",
          "generationConfig.seed", "generationConfig.presencePenalty",
          "generationConfig.responseMimeType", "generationConfig.responseSchema",
          "generationConfig.thinkingConfig", "generationConfig.thinkingConfig.includeThoughts",
          "generationConfig.thinkingConfig.thinkingBudget", "generation_config", "tools",
          "tools.0.functionDeclarations", "tools.0.functionDeclarations.0.parameters",
          "toolConfig", "toolConfig.functionCallingConfig.mode", "safetySettings")
RESPONSES = ("model", "input", "input.0", "input.0.role", "input.0.content",
             "input.0.content.0", "input.0.type", "input.0.call_id", "input.0.output",
             "instructions", "user", "temperature", "top_p", "max_output_tokens", "stream",
             "store", "previous_response_id", "tools", "tools.0", "tools.0.tools",
             "tool_choice", "text", "text.format", "text.format.schema", "reasoning",
             "reasoning.effort", "metadata", "truncation", "service_tier", "include",
             "parallel_tool_calls", "prompt_cache_key", "top_logprobs", "background")

USER = [{"role": "user", "content": "hi"}]
CHAT = {"model": "deepseek-chat", "messages": USER}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": USER}
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
GOOGLE = {"x-goog-api-key": "{key}"}
OLLAMA_OPTIONS = ("options", "options.temperature", "options.top_p", "options.top_k",
                  "options.num_predict", "options.stop", "options.stop.0", "options.seed",
                  "think", "format", "format.properties", "keep_alive", "stream", "tools",
                  "tools.0", "tools.0.function", "tools.0.function.parameters")
OLLAMA_CHAT = {"model": "deepseek-chat", "messages": USER, "stream": False}
OLLAMA_GENERATE = {"model": "deepseek-chat", "prompt": "hi", "stream": False}

ROUTES = (
    Route("chat", "POST", "/v1/chat/completions", "openai", CHAT,
          _paths(*SAMPLING_OPENAI, *CHAT_SHAPE)),
    Route("responses", "POST", "/v1/responses", "openai",
          {"model": "deepseek-chat", "input": "hi"}, _paths(*RESPONSES)),
    Route("responses-input-tokens", "POST", "/v1/responses/input_tokens", "openai",
          {"model": "deepseek-chat", "input": "hi"}, _paths(*RESPONSES)),
    Route("embeddings", "POST", "/v1/embeddings", "openai",
          {"model": "text-embedding-3-small", "input": "hi"},
          _paths("model", "input", "input.0", "dimensions", "encoding_format", "user")),
    Route("messages", "POST", "/v1/messages", "anthropic", MESSAGES, _paths(*ANTHROPIC)),
    Route("anthropic-messages", "POST", "/anthropic/v1/messages", "anthropic", MESSAGES,
          _paths(*ANTHROPIC)),
    Route("bare-messages", "POST", "/messages", "anthropic", MESSAGES, _paths(*ANTHROPIC)),
    Route("count-tokens", "POST", "/v1/messages/count_tokens", "anthropic", MESSAGES,
          _paths(*ANTHROPIC)),
    Route("anthropic-count-tokens", "POST", "/anthropic/v1/messages/count_tokens",
          "anthropic", MESSAGES, _paths(*ANTHROPIC)),
    Route("bare-count-tokens", "POST", "/messages/count_tokens", "anthropic", MESSAGES,
          _paths(*ANTHROPIC)),
    Route("gemini-generate", "POST", "/v1beta/models/gemini-2.5-pro:generateContent",
          "google", CONTENTS, _paths(*GEMINI), extra_headers=GOOGLE),
    Route("gemini-v1-generate", "POST", "/v1/models/gemini-2.5-flash:generateContent",
          "google", CONTENTS, _paths(*GEMINI), extra_headers=GOOGLE),
    Route("gemini-v1alpha-generate", "POST", "/v1alpha/models/gemini-2.5-flash:generateContent",
          "google", CONTENTS, _paths(*GEMINI), extra_headers=GOOGLE),
    Route("gemini-stream-sse", "POST", "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
          "google", CONTENTS, _paths(*GEMINI), query="alt=sse", extra_headers=GOOGLE),
    Route("gemini-stream-array", "POST",
          "/v1beta/models/gemini-2.5-pro:streamGenerateContent", "google", CONTENTS,
          _paths(*GEMINI), extra_headers=GOOGLE),
    Route("gemini-count", "POST", "/v1beta/models/gemini-2.5-pro:countTokens", "google",
          CONTENTS, _paths(*GEMINI, "generateContentRequest",
                           "generateContentRequest.contents"), extra_headers=GOOGLE),
    Route("gemini-embed", "POST", "/v1beta/models/gemini-embedding-001:embedContent",
          "google", {"content": {"parts": [{"text": "hi"}]}},
          _paths("content", "content.parts", "content.parts.0", "content.parts.0.text",
                 "taskType", "title", "outputDimensionality", "model"),
          extra_headers=GOOGLE),
    Route("gemini-batch-embed", "POST",
          "/v1beta/models/gemini-embedding-001:batchEmbedContents", "google",
          {"requests": [{"content": {"parts": [{"text": "hi"}]}}]},
          _paths("requests", "requests.0", "requests.0.content", "requests.0.content.parts",
                 "requests.0.content.parts.0.text", "requests.0.model",
                 "requests.0.outputDimensionality", "requests.0.taskType"),
          extra_headers=GOOGLE),
    Route("gemini-model-action", "POST", "/v1beta/models/{}", "google", CONTENTS,
          segment="model_action", extra_headers=GOOGLE),
    Route("degpt-chat", "POST", "/api/v1/chat/completions", "openai",
          {**CHAT, "model": "auto"}, _paths(*SAMPLING_OPENAI, *CHAT_SHAPE)),
    Route("degpt-messages", "POST", "/api/v1/messages", "anthropic",
          {**MESSAGES, "model": "auto"}, _paths(*ANTHROPIC)),
    Route("degpt-count-tokens", "POST", "/api/v1/messages/count_tokens", "anthropic",
          {**MESSAGES, "model": "auto"}, _paths(*ANTHROPIC)),
    Route("lm", "POST", "/lm/v2/chat/completions", "openai", CHAT,
          _paths(*SAMPLING_OPENAI, *CHAT_SHAPE, "penalty_score", "top_k")),
    Route("hello", "POST", "/hello/v1/ask", "openai", {"question": "hi"},
          _paths("question", "model", "stream")),
    Route("models", "GET", "/v1/models/{}", "openai", segment="model_id"),
    Route("models-list", "GET", "/v1/models", "openai"),
    Route("responses-get", "GET", "/v1/responses/{}", "openai", segment="response_id"),
    Route("responses-input-items", "GET", "/v1/responses/{}/input_items", "openai",
          segment="response_id"),
    Route("responses-cancel", "POST", "/v1/responses/{}/cancel", "openai",
          segment="response_id"),
    Route("anthropic-models", "GET", "/anthropic/v1/models/{}", "anthropic",
          segment="model_id"),
    Route("anthropic-models-list", "GET", "/anthropic/v1/models", "anthropic"),
    Route("gemini-models", "GET", "/v1beta/models/{}", "google", segment="model_id",
          extra_headers=GOOGLE),
    Route("gemini-models-list", "GET", "/v1beta/models", "google", extra_headers=GOOGLE),
    Route("gemini-v1alpha-models", "GET", "/v1alpha/models/{}", "google", segment="model_id",
          extra_headers=GOOGLE),
    Route("gemini-v1alpha-models-list", "GET", "/v1alpha/models", "google",
          extra_headers=GOOGLE),
    Route("gemini-v1-models", "GET", "/v1/models/{}", "google", segment="model_id",
          extra_headers=GOOGLE),
    Route("gemini-v1-models-list", "GET", "/v1/models", "google", extra_headers=GOOGLE),
    Route("degpt-models", "GET", "/api/v1/models", "openai"),
    Route("root-chat", "POST", "/chat/completions", "openai", CHAT,
          _paths(*SAMPLING_OPENAI, *CHAT_SHAPE)),
    Route("root-responses", "POST", "/responses", "openai",
          {"model": "deepseek-chat", "input": "hi"}, _paths(*RESPONSES)),
    Route("root-responses-input-tokens", "POST", "/responses/input_tokens", "openai",
          {"model": "deepseek-chat", "input": "hi"}, _paths(*RESPONSES)),
    Route("root-embeddings", "POST", "/embeddings", "openai",
          {"model": "text-embedding-3-small", "input": "hi"},
          _paths("model", "input", "input.0", "dimensions", "encoding_format", "user")),
    Route("root-models", "GET", "/models/{}", "openai", segment="model_id"),
    Route("root-models-list", "GET", "/models", "openai"),
    Route("root-responses-get", "GET", "/responses/{}", "openai", segment="response_id"),
    Route("root-responses-input-items", "GET", "/responses/{}/input_items", "openai",
          segment="response_id"),
    Route("root-responses-cancel", "POST", "/responses/{}/cancel", "openai",
          segment="response_id"),
    Route("ollama-chat", "POST", "/api/chat", "ollama", OLLAMA_CHAT,
          _paths("model", "messages", "messages.0", "messages.0.role", "messages.0.content",
                 "messages.0.images", "messages.0.images.0", "messages.0.tool_calls",
                 "messages.0.thinking", *OLLAMA_OPTIONS)),
    Route("ollama-generate", "POST", "/api/generate", "ollama", OLLAMA_GENERATE,
          _paths("model", "prompt", "system", "suffix", "images", "images.0", "raw",
                 "context", "template", *OLLAMA_OPTIONS)),
    Route("ollama-show", "POST", "/api/show", "ollama", {"model": "deepseek-chat"},
          _paths("model", "name", "verbose")),
    Route("ollama-embed", "POST", "/api/embed", "ollama",
          {"model": "nomic-embed-text", "input": "hi"},
          _paths("model", "input", "input.0", "truncate", "dimensions", "options")),
    Route("ollama-embeddings", "POST", "/api/embeddings", "ollama",
          {"model": "nomic-embed-text", "prompt": "hi"}, _paths("model", "prompt", "options")),
    Route("ollama-version", "GET", "/api/version", "ollama"),
    Route("ollama-tags", "GET", "/api/tags", "ollama"),
    Route("ollama-ps", "GET", "/api/ps", "ollama"),
)


# -- values ------------------------------------------------------------------

NASTY_TEXT = st.sampled_from(["hot", "", "\x00", "a\x00b", "ünïcödé", "𝔘𝔫𝔦", "\u202e",
                              "\r\n", "null", "1e308", "<script>", "🙂" * 50, " " * 3])
NUMBERS = st.one_of(
    st.sampled_from([1e308, -1e308, -50, 0, 1, 2, 2.5, -0.0, 1.0, 2**53 + 1, 2**63 - 1,
                     2**64 - 1, -(2**63), 5e-324, 0.5]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, NASTY_TEXT, st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(
        ["type", "text", "role", "content", "parts", "data", "name"])), inner, max_size=3)),
    max_leaves=8)
DEEP = st.builds(Deep, depth=st.sampled_from([20, 60, 90, 97, 99, 101, 150, 255, 1100]),
                 brace=st.booleans())
UNKNOWN_BLOCK = st.builds(lambda kind, inner: {"type": kind, "x": inner, "data": inner},
                          st.sampled_from(["weird", "document", "executableCode", "text"]),
                          st.one_of(DEEP, JSON))
BAD_VALUE = st.one_of(SCALARS, JSON, DEEP, st.lists(UNKNOWN_BLOCK, min_size=1, max_size=2),
                      st.just([[], {}]), st.just({"x": 1}))


def set_path(body: Any, path: Path, value: Any) -> Any:
    """``body`` with ``value`` at ``path``; containers on the way are made
    (or replaced) as the path needs."""
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(key, int):
        items = list(body) if isinstance(body, list) else []
        if key < len(items):
            items[key] = set_path(items[key], rest, value)
        else:
            items.append(set_path({}, rest, value))
        return items
    obj = dict(body) if isinstance(body, dict) else {}
    obj[key] = set_path(obj.get(key, {}), rest, value)
    return obj


def encode(value: Any) -> bytes:
    """JSON text of ``value`` with each Deep marker written out in full."""
    deep: list[Deep] = []

    def mark(item: Any) -> Any:
        if isinstance(item, Deep):
            deep.append(item)
            return f"__DEEP_{len(deep) - 1}__"
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value))
    for index, marker in enumerate(deep):
        opened, closed = ('{"a":', "}") if marker.brace else ("[", "]")
        written = opened * marker.depth + "1" + closed * marker.depth
        text = text.replace(f'"__DEEP_{index}__"', written)
    return text.encode()


def structured(route: Route) -> st.SearchStrategy[bytes]:
    """The valid body with one or two fields broken, perhaps an unknown key too."""
    edits = st.lists(st.tuples(st.sampled_from(route.paths), BAD_VALUE), min_size=1, max_size=2)
    extra = st.dictionaries(st.text(max_size=8), st.one_of(JSON, DEEP), max_size=1)

    def build(pairs: list[tuple[Path, Any]], more: dict[str, Any]) -> bytes:
        body: Any = route.body
        for path, value in pairs:
            body = set_path(body, path, value)
        return encode({**more, **body})

    return st.builds(build, edits, extra)


def random_body(route: Route) -> st.SearchStrategy[bytes]:
    """Any JSON (objects mostly, with the route's own keys), or raw bytes."""
    keys = sorted({str(p[0]) for p in route.paths}) or ["x"]
    objects = st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=6)),
                              st.one_of(JSON, DEEP), max_size=5)
    return st.one_of(objects.map(encode), JSON.map(encode), DEEP.map(encode),
                     st.binary(max_size=40), st.just(b"[" * 5000))


def segment_values() -> st.SearchStrategy[str]:
    """A path segment: names, control characters, colons, deep-looking text."""
    text = st.one_of(st.text(max_size=30), NASTY_TEXT, st.sampled_from(
        ["gemini-2.5-pro:generateContent", "x:countTokens", ":generateContent", "a:b:c",
         "gemini-2.5-pro:", "%00", "deepseek-chat", "resp_x", "[" * 200]))
    return text.map(lambda s: quote(s, safe=":"))
