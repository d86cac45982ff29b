"""Inline attachments → files in the web chat's own store (spec §7).

The web chat reads images and documents only as uploaded files referenced
by id in ``ref_file_ids``; putting their bytes into the prompt would flood
it. :func:`plan_uploads` picks the attachments to upload (identical payloads
once, at most :data:`MAX_UPLOADS`) before any account is leased, and
:func:`upload_all` uploads them on the turn's account: its own PoW challenge
per file, then polling until the store has parsed it. Files belong to the
account that uploaded them, so a turn that fails over uploads again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .. import pow as pow_solver
from ..canonical import AttachmentPart, ChatRequest, Message, Part, ToolResult
from ..errors import InvalidRequest, UpstreamError
from .client import UPLOAD_PATH, DeepSeekClient
from .envelope import POW_REFUSED_CODES, UpstreamCallError
from .credentials import Credentials, TokenKeeper, with_refresh

log = logging.getLogger("ds2proxy.upstream")

MAX_UPLOADS = 50
VISION = "vision"
# Statuses DS2API accepts as "parsed and usable", compared case-insensitively.
READY_STATUSES = frozenset({"processed", "ready", "done", "available", "success", "completed",
                            "finished"})
FAILED_STATUSES = frozenset({"failed", "error"})
# Polling starts fast (most files are ready at once) and backs off to the 1 s
# DS2API uses; the whole wait is bounded like DS2API's 65 s.
POLL_FIRST_SECONDS = 0.05
POLL_MAX_SECONDS = 1.0
READY_TIMEOUT_SECONDS = 65.0


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """One distinct payload to upload, keyed by content hash and model type."""

    key: str
    data: bytes
    kind: str
    name: str
    mime_type: str
    model_type: str

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}'"


def upload_key(part: AttachmentPart, model_type: str) -> str | None:
    """The dedup key of an attachment that needs uploading, else None."""
    if part.data is None or part.file_id:
        return None
    return f"{digest_of(part)}:{upload_model_type(part, model_type)}"


def digest_of(part: AttachmentPart) -> str:
    """The sha256 of an inline payload, kept on the part (and its copies):
    a turn keys it several times, each a full pass over megabytes."""
    if part.digest is None:
        assert part.data is not None
        part.digest = hashlib.sha256(part.data).hexdigest()
    return part.digest


def hash_attachments(chat: ChatRequest) -> ChatRequest:
    """Work out every inline payload's digest now (called in a worker thread
    for a large request, so the turn never hashes megabytes on the loop)."""
    for message in chat.messages:
        for part in message.attachments:
            if part.data is not None:
                digest_of(part)
    return chat


def upload_model_type(part: AttachmentPart, model_type: str) -> str:
    """Images are parsed by the vision model; other files keep the request's tier."""
    return VISION if _is_image(part) else model_type


def _is_image(part: AttachmentPart) -> bool:
    return part.kind == "image" or (part.mime_type or "").startswith("image/")


def plan_uploads(messages: Iterable[Message], model_type: str) -> dict[str, PendingUpload]:
    """Distinct inline payloads in order of appearance; 400 beyond the limit."""
    plan: dict[str, PendingUpload] = {}
    for message in messages:
        for part in message.attachments:
            key = upload_key(part, model_type)
            if key is None or key in plan:
                continue
            if len(plan) == MAX_UPLOADS:
                raise InvalidRequest(f"at most {MAX_UPLOADS} distinct inline images or files "
                                     "can be attached to one request")
            plan[key] = _pending(key, part, model_type, len(plan) + 1)
    return plan


def total_bytes(plan: dict[str, PendingUpload]) -> int:
    """The bytes a plan uploads (they count into prompt tokens)."""
    return sum(len(u.data) for u in plan.values())


def _pending(key: str, part: AttachmentPart, model_type: str, number: int) -> PendingUpload:
    assert part.data is not None
    mime = part.mime_type or ("image/png" if part.kind == "image" else "application/octet-stream")
    return PendingUpload(key=key, data=part.data, kind=part.kind, mime_type=mime,
                         name=part.name or _default_name(part.kind, mime, number),
                         model_type=upload_model_type(part, model_type))


def _default_name(kind: str, mime: str, number: int) -> str:
    """A filename the store accepts: the extension tells it the format."""
    ext = mimetypes.guess_extension(mime) or (".png" if kind == "image" else ".bin")
    return f"{kind}-{number}{ext}"


async def upload_all(client: DeepSeekClient, creds: Credentials, keeper: TokenKeeper,
                     uploads: Iterable[PendingUpload]) -> dict[str, str]:
    """Upload each payload on the turn's account: key → ready file id.

    One at a time, so a token refresh in :func:`with_refresh` happens once.
    """
    ids: dict[str, str] = {}
    for upload in uploads:
        ids[upload.key] = await _upload_with_refresh(client, creds, keeper, upload)
    return ids


async def _upload_with_refresh(client: DeepSeekClient, creds: Credentials,
                               keeper: TokenKeeper, upload: PendingUpload) -> str:
    try:
        return await with_refresh(creds, keeper, lambda token: upload_one(client, token, upload))
    except UpstreamCallError as exc:
        raise UpstreamError(f"uploading the {upload.label} failed: {exc.envelope.message}"
                            ) from None


async def upload_one(client: DeepSeekClient, token: str, upload: PendingUpload) -> str:
    """Challenge → upload → wait until ready; the file id.

    A refused PoW answer gets one fresh challenge, as for completions (§12).
    """
    try:
        info = await _post(client, token, upload)
    except UpstreamCallError as exc:
        if exc.envelope.code not in POW_REFUSED_CODES:
            raise
        info = await _post(client, token, upload)
    return await wait_ready(client, token, info, upload)


async def _post(client: DeepSeekClient, token: str, upload: PendingUpload) -> dict:
    """One upload with its own challenge for the upload target path (§5.6)."""
    challenge = await client.create_pow_challenge(token, UPLOAD_PATH)
    header = pow_solver.encode_header(challenge, await pow_solver.solve(challenge))
    return await client.upload_file(token, header, data=upload.data, name=upload.name,
                                    mime_type=upload.mime_type, model_type=upload.model_type)


async def wait_ready(client: DeepSeekClient, token: str, info: dict, upload: PendingUpload
                     ) -> str:
    """Poll ``fetch_files`` until the store has parsed the file (bounded wait)."""
    file_id = str(info["id"])
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    delay = POLL_FIRST_SECONDS
    while True:
        _check_status(info, upload)
        if str(info.get("status") or "").lower() in READY_STATUSES:
            log.info("uploaded %s as %s", upload.label, file_id)
            return file_id
        if time.monotonic() + delay > deadline:
            raise UpstreamError(f"the uploaded {upload.label} was not ready within "
                                f"{READY_TIMEOUT_SECONDS:.0f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, POLL_MAX_SECONDS)
        info = _find_file(await client.fetch_files(token, [file_id]), file_id) or info


def _check_status(info: dict, upload: PendingUpload) -> None:
    status = str(info.get("status") or "").lower()
    if status in FAILED_STATUSES:
        reason = info.get("error_code") or "no reason given"
        raise UpstreamError(f"the web chat could not process the {upload.label} ({reason})",
                            retryable=False)


def _find_file(files: list[dict], file_id: str) -> dict | None:
    """The polled file, found by ``id`` or ``file_id`` (spec §7)."""
    return next((f for f in files if file_id in (f.get("id"), f.get("file_id"))), None)


def with_uploaded_ids(chat: ChatRequest, ids: dict[str, str]) -> ChatRequest:
    """A copy of ``chat`` whose uploaded attachments carry their file ids.

    The request itself stays untouched: another account's upload gives
    other ids.
    """
    model_type = chat.model.model_type

    def mark_one(part: AttachmentPart) -> AttachmentPart:
        key = upload_key(part, model_type)
        return replace(part, file_id=ids[key]) if key is not None and key in ids else part

    def mark(part: Part) -> Part:
        if isinstance(part, AttachmentPart):
            return mark_one(part)
        if isinstance(part, ToolResult) and part.attachments:
            return replace(part, attachments=tuple(map(mark_one, part.attachments)))
        return part

    messages = [Message(m.role, [mark(p) for p in m.parts]) for m in chat.messages]
    return replace(chat, messages=messages)


def ref_file_ids(chat: ChatRequest) -> list[str]:
    """Every file id the turn references, request-level ones first, no repeats."""
    ids = list(chat.file_ids)
    ids += [p.file_id for m in chat.messages for p in m.attachments if p.file_id]
    return list(dict.fromkeys(ids))
