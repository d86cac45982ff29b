"""Ollama ``/api/chat`` and ``/api/generate`` bodies → canonical requests.

Ollama messages carry images as bare base64 strings, tool calls with their
arguments as objects and no call ids; tool results name the tool
(``tool_name``) instead. Calls get ids here, and each result is paired
with the call its ``tool_call_id`` names, else the earliest unanswered call
of its name (else the earliest one).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ds2proxy.plugin_api import (
    AttachmentPart,
    ChatRequest,
    InvalidRequest,
    Message,
    Part,
    PluginAPI,
    ReasoningPart,
    ResolvedModel,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolResult,
)
from ds2proxy.dialects.openai_chat import parse_tools
from ds2proxy.dialects.sampling import ollama_sampling
from ds2proxy.dialects.validate import objects, parse_stops

MAX_STOP = 16
THINK_LEVELS = ("low", "medium", "high")
_IMAGE_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
                (b"GIF8", "image/gif"), (b"RIFF", "image/webp"))


def model_name(body: dict) -> str:
    """``model`` (``name`` in older clients), required."""
    name = body.get("model", body.get("name"))
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("model is required", param="model")
    return name


def base_name(name: str) -> str:
    """The name without its Ollama tag: ``deepseek-r1:14b`` → ``deepseek-r1``."""
    return name.strip().split(":", 1)[0] if ":" in name else name.strip()


def served_name(api: PluginAPI, name: str) -> str:
    """The name to resolve. The pool ignores an Ollama tag, but a provider's
    models may be tagged names themselves (``qwen3:8b`` on a local Ollama,
    ``qwen/qwen3-coder:free``, ``llama3:latest`` asked for as ``llama3``): a
    name a provider answers is kept as asked, unless the pool serves its bare
    name (so a catch-all provider does not take ``deepseek-r1:14b``)."""
    full, base = name.strip(), base_name(name)
    owner = api.models.owner
    if full == base:  # untagged: Ollama's implied tag may be what a provider lists
        latest = f"{full}:latest"
        if owner(full) is None and owner(latest) is not None and not _pool_serves(api, full):
            return latest
        return full
    if owner(full) is None:
        return base
    return base if owner(base) is None and _pool_serves(api, base) else full


def _pool_serves(api: PluginAPI, name: str) -> bool:
    try:
        api.resolve_model(name, family="ollama")
    except InvalidRequest:
        return False
    return True


def parse_chat(body: dict, model: ResolvedModel) -> ChatRequest:
    messages = parse_messages(body.get("messages"))
    tools = parse_tools(body.get("tools"))
    return _request(body, model, messages, tools)


def parse_generate(body: dict, model: ResolvedModel) -> ChatRequest:
    """``system`` + ``prompt`` (+ ``images``) as one user turn; ``suffix``,
    ``template``, ``raw`` and ``context`` are accepted and ignored."""
    prompt = body.get("prompt") or ""
    system = body.get("system")
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt must be a string", param="prompt")
    if system is not None and not isinstance(system, str):
        raise InvalidRequest("system must be a string", param="system")
    messages = [Message("system", [TextPart(system)])] if system else []
    messages.append(Message("user", [TextPart(prompt), *images(body.get("images"), "images")]))
    return _request(body, model, messages, [])


def is_load_only(body: dict, kind: str) -> bool:
    """Ollama answers an empty prompt / message list by loading the model only."""
    if kind == "chat":
        return body.get("messages") in (None, [])
    return not body.get("prompt") and not body.get("images")


def _request(body: dict, model: ResolvedModel, messages: list[Message],
             tools: list) -> ChatRequest:
    options = _options(body.get("options"))
    _keep_alive(body.get("keep_alive"))
    stream = True if body.get("stream") is None else body["stream"]
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be true or false", param="stream")
    sampling = ollama_sampling(options)
    if stops := parse_stops(options.get("stop"), param="options.stop", max_count=MAX_STOP):
        sampling["stop"] = stops
    return ChatRequest(model=model, messages=messages, stream=stream, tools=tools,
                       thinking=think(body.get("think")), max_tokens=_num_predict(options),
                       sampling=sampling, response_format=response_format(body.get("format")))


def think(value: Any) -> bool | None:
    """``think``: true / false, or a level (low, medium, high) that turns it on."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in THINK_LEVELS:
        return True
    raise InvalidRequest("think must be true, false, \"low\", \"medium\" or \"high\"",
                         param="think")


def response_format(value: Any) -> ResponseFormat:
    """``format``: "json" for any JSON object, or a JSON schema object."""
    if value in (None, ""):
        return ResponseFormat()
    if value == "json":
        return ResponseFormat(type="json_object")
    if isinstance(value, dict):
        return ResponseFormat(type="json_schema", schema=value)
    raise InvalidRequest("format must be \"json\" or a JSON schema object", param="format")


def _options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("options must be an object", param="options")
    return value


def _num_predict(options: dict[str, Any]) -> int | None:
    """``num_predict``: the token limit; -1 (and -2, fill the context) mean none."""
    value = options.get("num_predict")
    if value is None or value in (-1, -2):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest("options.num_predict must be a positive integer, -1 or -2",
                             param="options.num_predict")
    return value


def _keep_alive(value: Any) -> None:
    """Accepted (a duration string or seconds) and ignored: nothing stays loaded here."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
        raise InvalidRequest("keep_alive must be a duration string or a number",
                             param="keep_alive")


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


def parse_messages(value: Any) -> list[Message]:
    messages: list[Message] = []
    pending: list[ToolCall] = []
    for i, item in objects(value, "messages"):
        message = _message(item, i, pending)
        pending += message.tool_calls
        messages.append(message)
    return messages


def _message(item: dict, i: int, pending: list[ToolCall]) -> Message:
    role = item.get("role")
    content = item.get("content") or ""
    if not isinstance(role, str) or not role:
        raise InvalidRequest(f"messages[{i}].role must be a string", param="messages")
    if not isinstance(content, str):
        raise InvalidRequest(f"messages[{i}].content must be a string", param="messages")
    if role == "tool":
        media = tuple(images(item.get("images"), f"messages[{i}].images"))
        return Message("tool", [_tool_result(item, content, pending, media)])
    parts: list[Part] = []
    thinking = item.get("thinking")
    if role == "assistant" and isinstance(thinking, str) and thinking:
        parts.append(ReasoningPart(thinking))
    if content:
        parts.append(TextPart(content))
    parts += images(item.get("images"), f"messages[{i}].images")
    if role == "assistant":
        parts += _tool_calls(item.get("tool_calls"), i)
    return Message(role if role in ("system", "user", "assistant") else "user", parts)


def _tool_calls(value: Any, i: int) -> list[ToolCall]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"messages[{i}].tool_calls must be a list", param="messages")
    calls: list[ToolCall] = []
    for n, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"messages[{i}].tool_calls[{n}].function.name is required",
                                 param="messages")
        arguments = fn.get("arguments")
        calls.append(ToolCall(id=str(call.get("id") or f"call_{i}_{n}"), name=name,
                              arguments={} if arguments is None else arguments))
    return calls


def _tool_result(item: dict, content: str, pending: list[ToolCall],
                 media: tuple[AttachmentPart, ...]) -> ToolResult:
    """A tool message answers the open call its ``tool_call_id`` names, else
    the first open call of its tool (or the first open call); the images it
    carries (a screenshot) are attached."""
    name = item.get("tool_name") or item.get("name")
    name = name if isinstance(name, str) and name else None
    given = str(item["tool_call_id"]) if item.get("tool_call_id") else None
    call = next((c for c in pending if c.id == given), None) if given else None
    if call is None:
        call = next((c for c in pending if c.name == name), pending[0] if pending else None)
    if call is not None:
        pending.remove(call)
    call_id = given or (call.id if call else "")
    return ToolResult(call_id=str(call_id), content=content,
                      name=name or (call.name if call else None), attachments=media)


def images(value: Any, param: str) -> list[AttachmentPart]:
    """``images``: base64 strings (a data: URL prefix is tolerated)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{param} must be a list of base64 strings", param=param)
    parts: list[AttachmentPart] = []
    for n, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise InvalidRequest(f"{param}[{n}] must be a base64 string", param=param)
        payload = item.split(",", 1)[1] if item.startswith("data:") else item
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{param}[{n}] is not valid base64", param=param) from None
        parts.append(AttachmentPart(kind="image", data=data, mime_type=_mime(data),
                                    name=f"image-{n + 1}"))
    return parts


def _mime(data: bytes) -> str:
    return next((mime for magic, mime in _IMAGE_MAGIC if data.startswith(magic)),
                "application/octet-stream")
