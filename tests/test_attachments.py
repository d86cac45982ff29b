"""Inline images and files reach the web chat as uploaded files.

The official clients of each family send an inline payload to a live
server on the fake upstream; the upload must carry the bytes, mime type and
model type, the completion must reference the file id, and the prompt must
name the file without ever holding its base64.
"""

from __future__ import annotations

import base64

import anthropic
import openai
import pytest
from google.genai import types

from ds2proxy.canonical import AttachmentPart, Message, TextPart
from ds2proxy.errors import InvalidRequest
from ds2proxy.prompt.build import build_prompt
from ds2proxy.testing.envelopes import INVALID_TOKEN
from ds2proxy.testing.fake_pow import INVALID_POW
from ds2proxy.upstream.client import UPLOAD_PATH
from ds2proxy.upstream.files import MAX_UPLOADS, plan_uploads
from ds2proxy.testing.clients import anthropic_client, gemini_client, openai_client
from ds2proxy.turn_text import NOMINAL_FILE_ID
from token_util import reference_tokens

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PNG_B64 = base64.b64encode(PNG).decode()
PDF = b"%PDF-1.4\n" + b"0123456789" * 100


def image_url_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


async def ask_openai(proxy, *parts: dict, model: str = "deepseek-chat", stream: bool = False):
    messages = [{"role": "user", "content": [{"type": "text", "text": "describe"}, *parts]}]
    client = openai_client(proxy)
    if not stream:
        return await client.chat.completions.create(model=model, messages=messages)
    chunks = await client.chat.completions.create(model=model, messages=messages, stream=True)
    return [chunk async for chunk in chunks]


def completion_body(proxy) -> dict:
    [call] = proxy.fake.calls_to("chat/completion")
    return call.body


def assert_uploaded(proxy, data: bytes, mime: str, model_type: str) -> str:
    """The single upload carried these bytes; the completion references its id."""
    [call] = proxy.fake.calls_to("file/upload_file")
    [stored] = proxy.fake.files.values()
    assert stored.content == data and stored.content_type == mime
    assert call.headers["x-model-type"] == model_type
    assert call.headers["x-file-size"] == str(len(data))
    assert call.headers["x-thinking-enabled"] == "1"
    body = completion_body(proxy)
    assert body["ref_file_ids"] == [stored.id]
    assert body["model_type"] == "default"
    return stored.id


def assert_prompt_names(proxy, placeholder: str, b64: str) -> None:
    prompt = completion_body(proxy)["prompt"]
    assert placeholder in prompt
    assert b64[:40] not in prompt


async def test_openai_data_url_image_is_uploaded_for_vision(proxy):
    resp = await ask_openai(proxy, image_url_part(f"data:image/png;base64,{PNG_B64}"))
    file_id = assert_uploaded(proxy, PNG, "image/png", "vision")
    assert_prompt_names(proxy, f"describe\n[image: image/png, attached as {file_id}]", PNG_B64)
    # Uploaded bytes count into prompt tokens, a third of a token per byte.
    assert resp.usage.prompt_tokens >= len(PNG) // 3
    assert proxy.core.pool.inflight == 0


async def test_a_data_url_with_parameters_is_uploaded_and_counted(proxy):
    """RFC 2397 lets parameters (charset, name) precede ;base64: such a URL
    was taken for a remote one, so the file never reached the model and its
    text was not counted."""
    text = "Quarterly figures: 北京 up 12%, Paris down 3%.\n" * 20
    payload = base64.b64encode(text.encode()).decode()
    resp = await ask_openai(proxy, {"type": "file", "file": {
        "file_data": f"data:text/plain;charset=utf-8;base64,{payload}", "filename": "q.txt"}})
    file_id = assert_uploaded(proxy, text.encode(), "text/plain", "default")
    assert_prompt_names(proxy, f"[file: q.txt, attached as {file_id}]", payload)
    prompt = completion_body(proxy)["prompt"].replace(file_id, NOMINAL_FILE_ID)
    assert resp.usage.prompt_tokens == reference_tokens(prompt) + reference_tokens(text)


async def test_openai_chat_tool_result_image_is_uploaded(proxy):
    """A screenshot a tool returned in a Chat tool message reaches the model
    like the Responses and Anthropic ones, instead of being dropped."""
    called = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]}
    result = {"role": "tool", "tool_call_id": "call_1", "content": [
        {"type": "text", "text": "the screen"}, image_url_part(f"data:image/png;base64,{PNG_B64}")]}
    await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "look"}, called, result],
        tools=[{"type": "function", "function": {"name": "shot", "parameters": {"type": "object"}}}])
    file_id = assert_uploaded(proxy, PNG, "image/png", "vision")
    assert_prompt_names(proxy, f"the screen\n[image: image/png, attached as {file_id}]", PNG_B64)


async def test_anthropic_base64_image_block_is_uploaded(proxy):
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_B64}}
    await anthropic_client(proxy, "/anthropic", timeout=30.0).messages.create(
        model="claude-sonnet-4-6", max_tokens=256,
        messages=[{"role": "user", "content": [{"type": "text", "text": "describe"}, block]}])
    file_id = assert_uploaded(proxy, PNG, "image/png", "vision")
    assert_prompt_names(proxy, f"[image: image/png, attached as {file_id}]", PNG_B64)


async def test_gemini_inline_data_is_uploaded(proxy):
    parts = [types.Part(text="describe"),
             types.Part(inline_data=types.Blob(mime_type="image/png", data=PNG))]
    await gemini_client(proxy).aio.models.generate_content(
        model="gemini-2.5-flash", contents=[types.Content(role="user", parts=parts)])
    file_id = assert_uploaded(proxy, PNG, "image/png", "vision")
    assert_prompt_names(proxy, f"[image: image/png, attached as {file_id}]", PNG_B64)


async def test_inline_document_keeps_the_request_model_type(proxy):
    pdf_b64 = base64.b64encode(PDF).decode()
    part = {"type": "file", "file": {"filename": "report.pdf",
                                     "file_data": f"data:application/pdf;base64,{pdf_b64}"}}
    await ask_openai(proxy, part, model="deepseek-expert-chat")
    [call] = proxy.fake.calls_to("file/upload_file")
    assert call.headers["x-model-type"] == "expert"
    assert call.body["file_name"] == "report.pdf"
    [stored] = proxy.fake.files.values()
    assert completion_body(proxy)["model_type"] == "expert"
    assert_prompt_names(proxy, f"[file: report.pdf, attached as {stored.id}]", pdf_b64)


async def test_a_data_url_with_media_type_parameters_is_uploaded(proxy):
    """RFC 2397 lets the media type carry parameters: such a URL was taken for
    a remote one, so the image was never uploaded and the model saw only a
    placeholder."""
    await ask_openai(proxy, image_url_part(f"data:image/png;name=shot.png;base64,{PNG_B64}"))
    file_id = assert_uploaded(proxy, PNG, "image/png", "vision")
    assert proxy.fake.calls_to("file/upload_file")[0].body["file_name"] == "shot.png"
    assert_prompt_names(proxy, f"[image: image/png, attached as {file_id}]", PNG_B64)


async def test_a_text_file_data_url_with_a_charset_is_uploaded(proxy):
    text = "naïve café\n".encode()
    url = f"data:text/plain;charset=utf-8;base64,{base64.b64encode(text).decode()}"
    part = {"type": "file", "file": {"filename": "notes.txt", "file_data": url}}
    await ask_openai(proxy, part)
    [stored] = proxy.fake.files.values()
    assert stored.content == text and stored.content_type == "text/plain"
    assert completion_body(proxy)["ref_file_ids"] == [stored.id]


async def test_a_plain_data_url_is_percent_decoded(proxy):
    part = {"type": "input_file", "filename": "a.txt", "file_data": "data:,hello%20world%21"}
    await openai_client(proxy).responses.create(
        model="deepseek-chat", input=[{"role": "user", "content": [part]}])
    [stored] = proxy.fake.files.values()
    assert stored.content == b"hello world!"


async def test_a_data_url_without_its_comma_is_refused_before_any_work(proxy):
    with pytest.raises(openai.BadRequestError) as info:
        await ask_openai(proxy, image_url_part("data:image/png;base64"))
    assert info.value.body["param"] == "messages[0].content[1].image_url"
    assert proxy.fake.calls == []


async def test_the_same_image_twice_is_uploaded_once(proxy):
    url = f"data:image/png;base64,{PNG_B64}"
    await ask_openai(proxy, image_url_part(url), image_url_part(url))
    file_id = assert_uploaded(proxy, PNG, "image/png", "vision")
    assert completion_body(proxy)["prompt"].count(f"attached as {file_id}") == 2


async def test_a_file_pending_for_a_while_is_polled_until_ready(proxy):
    proxy.fake.file_pending_polls = 2
    await ask_openai(proxy, image_url_part(f"data:image/png;base64,{PNG_B64}"))
    assert len(proxy.fake.calls_to("file/fetch_files")) == 3
    assert_uploaded(proxy, PNG, "image/png", "vision")


async def test_remote_url_is_a_placeholder_and_not_uploaded(proxy):
    await ask_openai(proxy, image_url_part("https://img.example/cat.png"))
    assert proxy.fake.calls_to("file/upload_file") == []
    body = completion_body(proxy)
    assert body["ref_file_ids"] == []
    assert "[image: https://img.example/cat.png]" in body["prompt"]


async def test_a_client_file_id_goes_straight_to_ref_file_ids(proxy):
    part = {"type": "file", "file": {"file_id": "file-from-client"}}
    await ask_openai(proxy, part)
    assert proxy.fake.calls_to("file/upload_file") == []
    assert completion_body(proxy)["ref_file_ids"] == ["file-from-client"]


@pytest.mark.parametrize("stream", [False, True])
async def test_upload_failure_is_a_clear_error_before_streaming(proxy, stream):
    proxy.fake.upload_error = (9, "FILE_TYPE_NOT_SUPPORTED")
    with pytest.raises(openai.APIStatusError) as info:
        await ask_openai(proxy, image_url_part(f"data:image/png;base64,{PNG_B64}"),
                         stream=stream)
    assert info.value.status_code == 502
    assert "uploading the image" in info.value.message
    assert "FILE_TYPE_NOT_SUPPORTED" in info.value.message
    assert proxy.fake.calls_to("chat/completion") == []
    assert proxy.core.pool.inflight == 0


async def test_upload_failure_in_the_anthropic_shape(proxy):
    proxy.fake.upload_error = (9, "FILE_TYPE_NOT_SUPPORTED")
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_B64}}
    with pytest.raises(anthropic.APIStatusError) as info:
        await anthropic_client(proxy, "/anthropic", timeout=30.0).messages.create(
            model="claude-sonnet-4-6", max_tokens=256,
            messages=[{"role": "user", "content": [block]}])
    assert info.value.status_code == 502
    assert info.value.body["type"] == "error"
    assert "uploading the image" in info.value.body["error"]["message"]
    assert proxy.core.pool.inflight == 0


async def test_a_file_the_store_cannot_parse_fails_without_switching_accounts(proxy):
    proxy.fake.file_final_status = "FAILED"
    with pytest.raises(openai.APIStatusError) as info:
        await ask_openai(proxy, image_url_part(f"data:image/png;base64,{PNG_B64}"))
    assert info.value.status_code == 502
    assert "could not process the image" in info.value.message
    assert len(proxy.fake.calls_to("file/upload_file")) == 1
    assert proxy.core.pool.inflight == 0


async def test_too_many_distinct_payloads_are_refused_before_any_upload(proxy):
    parts = [image_url_part("data:image/png;base64," + base64.b64encode(bytes([n])).decode())
             for n in range(MAX_UPLOADS + 1)]
    with pytest.raises(openai.BadRequestError):
        await ask_openai(proxy, *parts)
    assert proxy.fake.calls == []
    assert proxy.core.pool.inflight == 0


def refuse_first_upload(monkeypatch, proxy, error: tuple[int, str], *, revoke: bool = False
                        ) -> None:
    """The fake answers the first upload's PoW check with ``error`` (after
    revoking every token when ``revoke``), then checks as usual."""
    check, refused = proxy.fake.pow.check, []

    def once(header, target_path, **kw):
        if target_path == UPLOAD_PATH and not refused:
            refused.append(target_path)
            if revoke:
                proxy.fake.revoke_tokens()
            return error
        return check(header, target_path, **kw)

    monkeypatch.setattr(proxy.fake.pow, "check", once)


async def test_a_refused_upload_pow_gets_one_fresh_challenge(proxy, monkeypatch):
    refuse_first_upload(monkeypatch, proxy, INVALID_POW)
    await ask_openai(proxy, image_url_part(f"data:image/png;base64,{PNG_B64}"))
    assert len(proxy.fake.calls_to("file/upload_file")) == 2
    assert completion_body(proxy)["ref_file_ids"] == list(proxy.fake.files)
    assert proxy.core.pool.inflight == 0


async def test_a_token_refused_at_upload_is_refreshed_once(proxy, monkeypatch):
    refuse_first_upload(monkeypatch, proxy, INVALID_TOKEN, revoke=True)
    await ask_openai(proxy, image_url_part(f"data:image/png;base64,{PNG_B64}"))
    first, second = proxy.fake.calls_to("file/upload_file")
    assert first.headers["authorization"] != second.headers["authorization"]
    # The same account logged in again, uploaded and completed: no switch.
    assert {c.account for c in proxy.fake.calls_to("chat/completion")} == {second.account}
    assert len(proxy.fake.calls_to("users/login")) == 2
    assert completion_body(proxy)["ref_file_ids"] == list(proxy.fake.files)


def test_plan_keys_identical_payloads_once_per_model_type():
    image = AttachmentPart("image", mime_type="image/png", data=PNG)
    same_as_file = AttachmentPart("file", mime_type="application/octet-stream", data=PNG)
    plan = plan_uploads([Message("user", [image, image, same_as_file])], "default")
    assert [u.model_type for u in plan.values()] == ["vision", "default"]
    assert [u.name for u in plan.values()] == ["image-1.png", "file-2.bin"]


def test_plan_limit_counts_distinct_payloads_only():
    same = [AttachmentPart("image", data=PNG) for _ in range(MAX_UPLOADS + 5)]
    assert len(plan_uploads([Message("user", same)], "default")) == 1
    many = [AttachmentPart("image", data=bytes([n])) for n in range(MAX_UPLOADS + 1)]
    with pytest.raises(InvalidRequest):
        plan_uploads([Message("user", many)], "default")


def test_uploaded_part_is_named_by_id_and_a_client_reference_is_not_mentioned():
    uploaded = AttachmentPart("image", data=PNG, file_id="file-9")
    referenced = AttachmentPart("file", name="a.txt", file_id="file-1")
    prompt = build_prompt([Message("user", [TextPart("see"), uploaded, referenced])])
    assert "see\n[image: attached as file-9]" in prompt
    assert "file-1" not in prompt


# -- images returned by tools (a screenshot read by an agent) -------------------


def assert_result_image_uploaded(proxy, result_text: str) -> None:
    """The tool result's image was uploaded for vision and is named inside the
    tool turn of the prompt, right after the result's own text."""
    file_id = assert_uploaded(proxy, PNG, "image/png", "vision")
    prompt = completion_body(proxy)["prompt"]
    assert f"{result_text}\n[image: image/png, attached as {file_id}]" in prompt
    assert PNG_B64[:40] not in prompt
    assert proxy.core.pool.inflight == 0


async def test_anthropic_tool_result_image_is_uploaded(proxy):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_B64}}
    await anthropic_client(proxy, "/anthropic", timeout=30.0).messages.create(
        model="claude-sonnet-4-6", max_tokens=256,
        tools=[{"name": "Read", "input_schema": {"type": "object"}}],
        messages=[
            {"role": "user", "content": "look at the screenshot"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                               "name": "Read", "input": {"path": "s.png"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "text", "text": "s.png:"},
                                                      image]}]}])
    assert_result_image_uploaded(proxy, "s.png:")


async def test_responses_function_output_image_is_uploaded(proxy):
    await openai_client(proxy).responses.create(model="deepseek-chat", input=[
        {"role": "user", "content": "take a screenshot"},
        {"type": "function_call", "call_id": "call_1", "name": "screenshot", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": [
            {"type": "input_text", "text": "taken"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}"}]}])
    assert_result_image_uploaded(proxy, "taken")


async def test_gemini_function_response_parts_are_uploaded(proxy):
    blob = types.FunctionResponseBlob(mime_type="image/png", data=PNG)
    response = types.FunctionResponse(
        name="screenshot", response={"output": "taken"},
        parts=[types.FunctionResponsePart(inline_data=blob)])
    await gemini_client(proxy).aio.models.generate_content(
        model="gemini-2.5-flash", contents=[
            types.Content(role="user", parts=[types.Part(text="take a screenshot")]),
            types.Content(role="model", parts=[types.Part(
                function_call=types.FunctionCall(name="screenshot", args={}))]),
            types.Content(role="user", parts=[types.Part(function_response=response)])])
    assert_result_image_uploaded(proxy, '{"output":"taken"}')


async def test_count_tokens_includes_the_bytes_a_turn_would_upload(proxy):
    client = anthropic_client(proxy, "/anthropic", timeout=30.0)
    text_only = [{"role": "user", "content": "describe"}]
    with_image = [{"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PNG_B64}}]}]
    plain = await client.messages.count_tokens(model="claude-sonnet-4-6", messages=text_only)
    counted = await client.messages.count_tokens(model="claude-sonnet-4-6", messages=with_image)
    assert counted.input_tokens - plain.input_tokens >= len(PNG) // 3
    # Counting uploads nothing.
    assert proxy.fake.calls_to("file/upload_file") == []
