"""File upload and readiness polling of the fake upstream (spec §7)."""

from __future__ import annotations

from aiohttp import BodyPartReader, web

from .envelopes import biz_error, missing_field, ok
from .fake_core import FakeCore, Refusal
from .state import FakeFile

UPLOAD_PATH = "/api/v0/file/upload_file"


class FileRoutes(FakeCore):
    # Polls of fetch_files that still answer PENDING before SUCCESS.
    file_pending_polls: int = 0
    # A business error every upload answers with (tests of upload failures).
    upload_error: tuple[int, str] | None = None
    # The status a file reaches after its pending polls: SUCCESS or FAILED (§7).
    file_final_status: str = "SUCCESS"

    def file_routes(self) -> list[web.RouteDef]:
        return [web.post(UPLOAD_PATH, self.upload_file),
                web.get("/api/v0/file/fetch_files", self.fetch_files)]

    async def upload_file(self, request: web.Request) -> web.Response:
        self.require_pow(request, UPLOAD_PATH)
        if self.upload_error is not None:
            return biz_error(self.upload_error)
        part = await _file_part(request)
        data = await part.read()
        upload = FakeFile(
            owner=self.call_of(request).account or "", name=part.filename or "file",
            content=bytes(data), content_type=part.headers.get("Content-Type", ""),
            model_kind="VISION" if request.headers.get("x-model-type") == "vision" else "NORMAL",
        )
        self.files[upload.id] = upload
        self.call_of(request).body = {"file_name": upload.name, "size": len(upload.content),
                                      "content_type": upload.content_type}
        return ok(upload.as_json(ready=False))

    async def fetch_files(self, request: web.Request) -> web.Response:
        owner = self.call_of(request).account
        found = []
        for file_id in request.query.get("file_ids", "").split(","):
            upload = self.files.get(file_id.strip())
            if upload is not None and upload.owner == owner:
                upload.polls += 1
                found.append(self._polled(upload))
        return ok({"files": found})

    def _polled(self, upload: FakeFile) -> dict:
        """The file as a poll sees it: pending, then the configured final status."""
        ready = upload.polls > self.file_pending_polls
        doc = upload.as_json(ready=ready)
        if ready:
            doc["status"] = self.file_final_status
        return doc


async def _file_part(request: web.Request) -> BodyPartReader:
    """The multipart part named ``file``; 422 when there is none."""
    if not request.content_type.startswith("multipart/"):
        raise Refusal(missing_field("file"))
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == "file":
            return part
    raise Refusal(missing_field("file"))
