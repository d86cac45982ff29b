"""Each API family's documented sampling and control fields, with ranges.

Checked before any account is leased (a bad value costs nothing) and the
result — never the client's raw value — is what travels upstream under the
canonical names of :data:`ds2proxy.pipeline`'s sampling set. Ranges follow
each family's public reference; see README "Validation".
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest
from .thinking import check_word
from .validate import (
    INT32_MAX,
    Bounds,
    Field,
    choice,
    one_choice,
    protobuf_number,
    read_field,
    read_fields,
    string_map,
)

TOKENS = Bounds(1, INT32_MAX)
UNIT = Bounds(0, 1)
PENALTY = Bounds(-2, 2)
LOGPROBS = Bounds(0, 20)

OPENAI_CHAT = (
    Field("temperature", "number", Bounds(0, 2), upstream="temperature"),
    Field("top_p", "number", UNIT, upstream="top_p"),
    Field("presence_penalty", "number", PENALTY, upstream="presence_penalty"),
    Field("frequency_penalty", "number", PENALTY, upstream="frequency_penalty"),
    Field("stop", "stop", max_items=4, upstream="stop"),
    Field("max_tokens", "integer", TOKENS),
    Field("max_completion_tokens", "integer", TOKENS),
    Field("seed", "integer"),
    Field("logprobs", "boolean"),
    Field("top_logprobs", "integer", LOGPROBS),
    Field("stream", "boolean"),
    Field("parallel_tool_calls", "boolean"),
    Field("store", "boolean"),
    Field("user", "string"),
    Field("logit_bias", "object"),
    Field("stream_options", "object"),
)

OPENAI_RESPONSES = (
    Field("temperature", "number", Bounds(0, 2), upstream="temperature"),
    Field("top_p", "number", UNIT, upstream="top_p"),
    Field("max_output_tokens", "integer", TOKENS),
    Field("max_tool_calls", "integer", TOKENS),
    Field("top_logprobs", "integer", LOGPROBS),
    Field("stream", "boolean"),
    Field("store", "boolean"),
    Field("background", "boolean"),
    Field("parallel_tool_calls", "boolean"),
    Field("user", "string"),
    Field("instructions", "string"),
    Field("previous_response_id", "string"),
    Field("prompt_cache_key", "string"),
    Field("safety_identifier", "string"),
    Field("service_tier", "string"),
    Field("truncation", "string"),
)

ANTHROPIC = (
    Field("temperature", "number", UNIT, upstream="temperature"),
    Field("top_p", "number", UNIT, upstream="top_p"),
    Field("top_k", "integer", Bounds(0, INT32_MAX), upstream="top_k"),
    Field("stop_sequences", "stop", max_items=16, allow_string=False, upstream="stop"),
    Field("max_tokens", "integer", TOKENS),
    Field("stream", "boolean"),
    Field("metadata", "object"),
)

GEMINI = (
    Field("temperature", "number", Bounds(0, 2), upstream="temperature"),
    Field("topP", "number", UNIT, upstream="top_p"),
    Field("topK", "integer", Bounds(0, INT32_MAX)),
    Field("maxOutputTokens", "integer", TOKENS, upstream="max_tokens"),
    Field("stopSequences", "stop", max_items=5, upstream="stop"),
    Field("presencePenalty", "number", Bounds(-2, 2, high_open=True), upstream="presence_penalty"),
    Field("frequencyPenalty", "number", Bounds(-2, 2, high_open=True),
          upstream="frequency_penalty"),
    Field("seed", "integer", Bounds(-(2**31), INT32_MAX)),
    Field("responseLogprobs", "boolean"),
    Field("logprobs", "integer", LOGPROBS),
    Field("responseMimeType", "string"),
    Field("thinkingConfig", "object"),
)

# Ollama's ``options`` (its Modelfile parameters); ranges as for Chat Completions.
# The rest of the options Ollama knows are checked for their type only, as
# Ollama checks them, and not applied (nothing runs locally).
OLLAMA_OPTIONS = (
    Field("temperature", "number", Bounds(0, 2), upstream="temperature"),
    Field("top_p", "number", UNIT, upstream="top_p"),
    Field("top_k", "integer", Bounds(0, INT32_MAX)),
    Field("presence_penalty", "number", PENALTY, upstream="presence_penalty"),
    Field("frequency_penalty", "number", PENALTY, upstream="frequency_penalty"),
    Field("seed", "integer"),
    *(Field(key, "integer") for key in ("num_keep", "repeat_last_n", "num_ctx", "num_batch",
                                        "num_gpu", "main_gpu", "num_thread",
                                        "draft_num_predict")),
    *(Field(key, "number") for key in ("min_p", "typical_p", "repeat_penalty")),
    Field("use_mmap", "boolean"),
)

GEMINI_LEVELS = ("THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH")
GEMINI_THINKING = (
    Field("includeThoughts", "boolean"),
    Field("thinkingBudget", "integer", Bounds(-1, INT32_MAX)),
    Field("thinkingLevel", "string"),
)


OPENAI_EFFORTS = "none, minimal, low, medium, high, xhigh"
# The Responses ``include`` value that asks for the answer's log probabilities.
LOGPROBS_INCLUDE = "message.output_text.logprobs"


def no_logprobs(asked: Any, field: str, *, code: str = "unsupported_parameter") -> None:
    """Token log probabilities cannot be served: the web chat reports none.
    A request that asks for them (``asked`` true, or a positive count) is a
    400 naming the field, not an answer whose ``logprobs`` is silently null.
    (DeepSeek's own API refuses the field the same way on its reasoner.)"""
    if asked is True or (isinstance(asked, int) and not isinstance(asked, bool) and asked > 0):
        raise InvalidRequest(f"'{field}' is not supported: this server cannot report token "
                             "log probabilities", param=field, code=code)


def text_only(value: Any, field: str, text_words: tuple[str, ...]) -> None:
    """Output modalities (Chat ``modalities``, Gemini ``responseModalities``):
    the web chat answers in text only, so asking for audio or images is a 400
    naming the field, not a text answer the client did not ask for."""
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequest(f"'{field}' must be a list of strings", param=field)
    if any(item.strip().upper() not in text_words for item in value):
        raise InvalidRequest(f"'{field}' may only ask for text: this server cannot answer "
                             "with audio or images", param=field, code="unsupported_value")


def openai_chat_sampling(body: dict[str, Any]) -> dict[str, Any]:
    """Chat Completions (also ``/api/v1`` and ``/lm/v2``)."""
    sampling = read_fields(body, OPENAI_CHAT)
    text_only(body.get("modalities"), "modalities", ("TEXT",))
    if body.get("audio") is not None:
        raise InvalidRequest("'audio' is not supported: this server cannot answer with audio",
                             param="audio", code="unsupported_parameter")
    no_logprobs(body.get("logprobs"), "logprobs")
    no_logprobs(body.get("top_logprobs"), "top_logprobs")
    one_choice(body.get("n"), "n")
    check_word(body.get("reasoning_effort"), "reasoning_effort", OPENAI_EFFORTS)
    string_map(body.get("metadata"), "metadata", max_pairs=16, max_key=64, max_value=512)
    return sampling


def responses_sampling(body: dict[str, Any]) -> dict[str, Any]:
    sampling = read_fields(body, OPENAI_RESPONSES)
    no_logprobs(body.get("top_logprobs"), "top_logprobs")
    include = body.get("include")
    if include is not None and (not isinstance(include, list)
                                or not all(isinstance(item, str) for item in include)):
        raise InvalidRequest("'include' must be a list of strings", param="include")
    no_logprobs(LOGPROBS_INCLUDE in (include or ()), "include")
    choice(body.get("truncation"), "truncation", ("auto", "disabled"))
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict):  # the API's own shape (the switch reads others too)
        check_word(reasoning.get("effort"), "reasoning.effort", OPENAI_EFFORTS)
        choice(reasoning.get("summary"), "reasoning.summary",
               ("auto", "concise", "detailed", "none"))
    string_map(body.get("metadata"), "metadata", max_pairs=16, max_key=64, max_value=512)
    return sampling


def anthropic_sampling(body: dict[str, Any]) -> dict[str, Any]:
    sampling = read_fields(body, ANTHROPIC)
    thinking = body.get("thinking")
    if isinstance(thinking, dict):  # Anthropic's own shape
        check_word(thinking.get("type"), "thinking.type", "enabled, disabled, adaptive")
    metadata = body.get("metadata") or {}
    read_fields(metadata, (Field("user_id", "string"),), prefix="metadata.")
    return sampling


def ollama_sampling(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of ``/api/chat`` and ``/api/generate`` (stop is read apart)."""
    return read_fields(options, OLLAMA_OPTIONS, prefix="options.")


def gemini_sampling(config: dict[str, Any], get: Any) -> dict[str, Any]:
    """``generationConfig`` read as Protocol Buffers' JSON (camelCase or
    snake_case; ``64``, ``64.0`` and ``"64"`` alike); ``get`` is the plugin's
    field lookup."""
    sampling = read_fields(config, GEMINI, prefix="generationConfig.", get=get, protobuf=True)
    for key in ("responseLogprobs", "logprobs"):
        no_logprobs(protobuf_number(get(config, key)), f"generationConfig.{key}")
    text_only(get(config, "responseModalities"), "generationConfig.responseModalities",
              ("TEXT", "MODALITY_UNSPECIFIED"))
    one_choice(read_field(get(config, "candidateCount"), Field("candidateCount", "integer"),
                          "generationConfig.candidateCount", protobuf=True),
               "generationConfig.candidateCount")
    thinking = get(config, "thinkingConfig") or {}
    read_fields(thinking, GEMINI_THINKING,
                prefix="generationConfig.thinkingConfig.", get=get, protobuf=True)
    level = get(thinking, "thinkingLevel")
    if level is not None and get(thinking, "thinkingBudget") is not None:
        raise InvalidRequest("'generationConfig.thinkingConfig' takes thinkingBudget or "
                             "thinkingLevel, not both",
                             param="generationConfig.thinkingConfig.thinkingLevel")
    if level is not None and (not isinstance(level, str)
                              or level.strip().upper() not in GEMINI_LEVELS):
        raise InvalidRequest("'generationConfig.thinkingConfig.thinkingLevel' must be one of: "
                             + ", ".join(GEMINI_LEVELS),
                             param="generationConfig.thinkingConfig.thinkingLevel")
    return sampling
