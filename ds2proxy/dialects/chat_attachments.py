"""Images and files in OpenAI-style content parts (Chat and Responses):
``image_url`` / ``input_image`` and ``file`` / ``input_file`` parts, and
data URLs decoded to the bytes the web chat's file store takes. Inline data
never reaches the prompt; a remote URL is kept for the placeholder."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from ..canonical import AttachmentPart
from ..errors import InvalidRequest
from .content import inline_bytes


def attachment_from_url(url: str, kind: str = "image", name: str | None = None,
                        where: str = "url") -> AttachmentPart:
    """A data: URL is decoded (never put in the prompt); other URLs are kept
    as-is. Base64 that does not decode, or a data URL without its comma, is a
    400 naming ``where``.

    RFC 2397: ``data:[<type>[;<param>=<value>]…][;base64],<data>``; a media
    type may carry parameters (``text/plain;charset=utf-8``, a browser's
    ``;name=photo.png``) and data without ``;base64`` is percent-encoded."""
    if url[:5].lower() != "data:":
        return AttachmentPart(kind=kind, url=url, name=name)  # type: ignore[arg-type]
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise InvalidRequest(f"'{where}' is not a valid data URL (no ',' before the data)",
                             param=where)
    params = [param.strip() for param in header.split(";")]
    is_b64 = len(params) > 1 and params[-1].lower() == "base64"
    data = inline_bytes(payload, where) if is_b64 else unquote_to_bytes(payload)
    named = {key.lower(): value for key, _, value in (param.partition("=") for param in params)}
    name = name or named.get("name") or named.get("filename") or None
    return AttachmentPart(kind=kind, mime_type=params[0] or None, data=data,  # type: ignore
                          name=name)


def image_part(item: dict, where: str) -> AttachmentPart:
    """An image part: a file id, or a URL (``image_url`` as a string or an
    object with ``url``); one with neither is a 400."""
    if isinstance(item.get("file_id"), str):
        return AttachmentPart(kind="image", file_id=item["file_id"])
    url = item.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"'{where}.image_url' must be a URL or an object with 'url'",
                             param=f"{where}.image_url")
    return attachment_from_url(url, where=f"{where}.image_url")


def file_part(item: dict, where: str) -> AttachmentPart:
    file = item.get("file") if isinstance(item.get("file"), dict) else item
    name = file.get("filename") or file.get("name")
    if isinstance(file.get("file_id"), str):
        return AttachmentPart(kind="file", file_id=file["file_id"], name=name)
    data = file.get("file_data")
    if isinstance(data, str):
        field = f"{where}.file.file_data" if file is not item else f"{where}.file_data"
        if data.startswith("data:"):
            return attachment_from_url(data, "file", name, field)
        return AttachmentPart(kind="file", data=inline_bytes(data, field), name=name)
    return AttachmentPart(kind="file", name=name, url=file.get("file_url"))


def result_media(content: Any, where: str) -> tuple[AttachmentPart, ...]:
    """The images and files a tool returned among its content parts (a
    screenshot): attached like a user's, not dropped with the non-text parts."""
    if not isinstance(content, list):
        return ()
    media: list[AttachmentPart] = []
    for index, item in enumerate(content):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind in ("image_url", "input_image"):
            media.append(image_part(item, f"{where}[{index}]"))
        elif kind in ("file", "input_file"):
            media.append(file_part(item, f"{where}[{index}]"))
    return tuple(media)
