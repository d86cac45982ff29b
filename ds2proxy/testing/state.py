"""What the fake upstream remembers: accounts, sessions, messages, files, calls."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .scripts import Delivery


def normalize_mobile(value: str) -> str:
    """Digits only; a 13-digit ``86…`` number loses its country code (spec §2)."""
    digits = re.sub(r"\D", "", value)
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


@dataclass(frozen=True)
class FakeAccount:
    """A web-chat user: log in with ``email`` or ``mobile`` plus ``password``."""

    password: str
    email: str = ""
    mobile: str = ""

    @property
    def identity(self) -> str:
        """How calls are attributed: the e-mail, else the normalized mobile number."""
        return self.email.strip().lower() or normalize_mobile(self.mobile)


@dataclass
class CallRecord:
    """One request the fake received. ``account`` is the token's owner (None if none).

    ``headers`` look up case-insensitively, as HTTP headers do.
    """

    path: str
    method: str
    headers: Mapping[str, str]
    query: dict[str, str]
    account: str | None = None
    body: Any = None
    at: float = field(default_factory=time.monotonic)  # arrival time (pacing tests)
    peer: str = ""  # the caller's address (which proxy a call came through)

    @property
    def endpoint(self) -> str:
        """The path below ``/api/v0/``, e.g. ``chat/continue``."""
        return self.path.removeprefix("/api/v0/")


@dataclass
class FakeMessage:
    """A completion's answer: its rendered rounds and how many were served."""

    request_id: int
    response_id: int
    rounds: list[list[bytes]]
    delivery: Delivery
    served: int = 0


@dataclass
class FakeSession:
    owner: str
    seq_id: int
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    inserted_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    title: str | None = None
    last_message_id: int = 0
    messages: dict[int, FakeMessage] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "seq_id": self.seq_id, "agent": "chat", "model_type": "default",
                "title": self.title, "title_type": "SYSTEM" if self.title else "WIP",
                "version": len(self.messages),
                "current_message_id": self.last_message_id or None, "pinned": False,
                "inserted_at": self.inserted_at, "updated_at": self.updated_at}


@dataclass
class FakeFile:
    owner: str
    name: str
    content: bytes
    content_type: str
    model_kind: str = "NORMAL"
    id: str = field(default_factory=lambda: f"file-{uuid.uuid4()}")
    inserted_at: float = field(default_factory=time.time)
    polls: int = 0

    def as_json(self, ready: bool) -> dict[str, Any]:
        return {"id": self.id, "status": "SUCCESS" if ready else "PENDING",
                "file_name": self.name, "from_share": False, "file_size": len(self.content),
                "model_kind": self.model_kind,
                "token_usage": len(self.content) // 4 + 1 if ready else None,
                "error_code": None, "inserted_at": self.inserted_at,
                "updated_at": self.inserted_at, "is_image": self.content_type.startswith("image/"),
                "audit_result": None}
