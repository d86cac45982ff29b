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
from collections.abc import Callable
from typing import Any

from ds2proxy.plugin_api import (
    AttachmentPart,
    ChatRequest,
    InvalidRequest,
    Message,
    Part,
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

from .fields import check_flags, check_generate_extras, keep_alive_seconds, options_object
from .open_calls import OpenCalls

# Ollama takes any number of stop sequences; this bound only keeps the
# stop matcher (which tries each sequence on every piece of text) cheap.
MAX_STOP = 256
THINK_LEVELS = ("low", "medium", "high", "max")
# Ollama's "insert": the model writes what goes between the prompt and the
# suffix. Code models do it through their template; a chat model is asked.
FILL_IN_THE_MIDDLE = (
    "Fill in the middle. Reply with only the text that belongs between the PREFIX and "
    "the SUFFIX below, exactly as it would appear there: no explanation, no code fence, "
    "and neither the prefix nor the suffix repeated.\n\n"
    "<PREFIX>\n{prefix}\n</PREFIX>\n<SUFFIX>\n{suffix}\n</SUFFIX>")
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


# The model, looked up once the body's own fields have been checked: Ollama
# decodes the whole body (a wrong type is a 400) before it looks for the
# model (404), and reads ``options`` only after that.
ModelLookup = Callable[[], ResolvedModel]


def parse_chat(body: dict, model_of: ModelLookup) -> ChatRequest:
    messages = parse_messages(body.get("messages"))
    tools = parse_tools(body.get("tools"))
    return _request(body, model_of, messages, tools)


def parse_generate(body: dict, model_of: ModelLookup) -> ChatRequest:
    """``system`` + ``prompt`` (+ ``images``) as one user turn, a fill-in-the-
    middle request when a ``suffix`` is given; ``template``, ``raw`` and
    ``context`` are checked and ignored."""
    prompt = "" if body.get("prompt") is None else body["prompt"]
    system = body.get("system")
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt must be a string", param="prompt")
    if system is not None and not isinstance(system, str):
        raise InvalidRequest("system must be a string", param="system")
    check_generate_extras(body)
    if body.get("suffix"):  # raw too: editors send prefix + suffix with raw: true
        prompt = FILL_IN_THE_MIDDLE.format(prefix=prompt, suffix=body["suffix"])
    messages = [Message("system", [TextPart(system)])] if system else []
    messages.append(Message("user", [TextPart(prompt), *images(body.get("images"), "images")]))
    return _request(body, model_of, messages, [])


def is_load_only(body: dict, kind: str) -> bool:
    """Ollama answers an empty prompt / message list by loading the model
    only (once the body has been parsed: a wrong type is still a 400)."""
    if kind == "chat":
        return body.get("messages") in (None, [])
    return not body.get("prompt") and not body.get("images")


def _request(body: dict, model_of: ModelLookup, messages: list[Message],
             tools: list) -> ChatRequest:
    keep_alive_seconds(body.get("keep_alive"))  # checked; nothing stays loaded here
    check_flags(body)
    stream = True if body.get("stream") is None else body["stream"]
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be true or false", param="stream")
    thinking = think(body.get("think"))
    model = model_of()
    form = response_format(body.get("format"))  # Ollama reads it when it runs the model
    options = options_object(body.get("options"))
    sampling = ollama_sampling(options)
    if stops := parse_stops(options.get("stop"), param="options.stop", max_count=MAX_STOP):
        sampling["stop"] = stops
    return ChatRequest(model=model, messages=messages, stream=stream, tools=tools,
                       thinking=thinking, max_tokens=_num_predict(options),
                       sampling=sampling, response_format=form)


def think(value: Any) -> bool | None:
    """``think``: true / false, or a level (low, medium, high, max) that turns it on."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in THINK_LEVELS:
        return True
    raise InvalidRequest("think must be true, false, \"low\", \"medium\", \"high\" or "
                         "\"max\"", param="think")


def response_format(value: Any) -> ResponseFormat:
    """``format``: "json" for any JSON object, or a JSON schema object."""
    if value in (None, ""):
        return ResponseFormat()
    if value == "json":
        return ResponseFormat(type="json_object")
    if isinstance(value, dict):
        return ResponseFormat(type="json_schema", schema=value)
    raise InvalidRequest("format must be \"json\" or a JSON schema object", param="format")


def _num_predict(options: dict[str, Any]) -> int | None:
    """``num_predict``: the token limit; 0 and any negative value mean none,
    as Ollama's runner reads them (it limits only a count above 0)."""
    value = options.get("num_predict")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest("options.num_predict must be an integer",
                             param="options.num_predict")
    return value if value > 0 else None


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


def parse_messages(value: Any) -> list[Message]:
    """The chat's messages; none at all (absent or ``[]``) is a load request."""
    if value is None or value == []:
        return []
    messages: list[Message] = []
    pending = OpenCalls()
    for i, item in objects(value, "messages"):
        message = _message(item, i, pending)
        pending.add(message.tool_calls)
        messages.append(message)
    return messages


def _message(item: dict, i: int, pending: OpenCalls) -> Message:
    """One message; its role is read case-blind, as Ollama reads it."""
    where = f"messages[{i}]"
    role = item.get("role")
    if not isinstance(role, str) or not role:
        raise InvalidRequest(f"{where}.role must be a string", param="messages")
    role = role.lower()
    content = _string(item, "content", where)
    if role == "tool":
        media = tuple(images(item.get("images"), f"{where}.images"))
        return Message("tool", [_tool_result(item, content, pending, media, where)])
    parts: list[Part] = []
    thinking = _string(item, "thinking", where)
    if role == "assistant" and thinking:
        parts.append(ReasoningPart(thinking))
    if content:
        parts.append(TextPart(content))
    parts += images(item.get("images"), f"{where}.images")
    calls = _tool_calls(item.get("tool_calls"), i)
    if role == "assistant":
        parts += calls
    return Message(role if role in ("system", "user", "assistant") else "user", parts)


def _string(item: dict, key: str, where: str) -> str:
    """An optional string field ("" when absent or null); any other type is a 400."""
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}.{key} must be a string", param="messages")
    return value


def _tool_calls(value: Any, i: int) -> list[ToolCall]:
    """``tool_calls``: each a ``function`` with a name and its arguments as an
    object (Ollama's shape; a JSON string there is a 400, as Ollama has it)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"messages[{i}].tool_calls must be a list", param="messages")
    calls: list[ToolCall] = []
    for n, call in enumerate(value):
        where = f"messages[{i}].tool_calls[{n}]"
        fn = call.get("function") if isinstance(call, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{where}.function.name is required", param="messages")
        arguments = fn.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidRequest(f"{where}.function.arguments must be an object",
                                 param="messages")
        calls.append(ToolCall(id=_string(call, "id", where) or f"call_{i}_{n}", name=name,
                              arguments=arguments or {}))
    return calls


def _tool_result(item: dict, content: str, pending: OpenCalls,
                 media: tuple[AttachmentPart, ...], where: str) -> ToolResult:
    """A tool message answers the open call its ``tool_call_id`` names, else
    the first open call of its tool (or the first open call); the images it
    carries (a screenshot) are attached."""
    name = _string(item, "tool_name", where) or _string(item, "name", where) or None
    given = _string(item, "tool_call_id", where) or None
    call = pending.take(given, name)
    call_id = given or (call.id if call else "")
    return ToolResult(call_id=str(call_id), content=content,
                      name=name or (call.name if call else None), attachments=media)


def images(value: Any, param: str) -> list[AttachmentPart]:
    """``images``: base64 strings (a data: URL prefix is tolerated, and line
    breaks, which Ollama's decoder skips: ``base64`` wraps its output)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{param} must be a list of base64 strings", param=param)
    parts: list[AttachmentPart] = []
    for n, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise InvalidRequest(f"{param}[{n}] must be a base64 string", param=param)
        payload = item.split(",", 1)[1] if item.startswith("data:") else item
        payload = payload.replace("\r", "").replace("\n", "")
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
