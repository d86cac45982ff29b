"""Recorded upstream streams: cut into the rounds the fake serves one per call.

A recording may start with foreign bytes (one capture begins with the
``upload_file`` JSON reply of the same request); the stream proper starts at
its first ``event:`` line. Each ``event: ready`` opens a round: the
completion's, then one per ``chat/continue``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STREAM_FILE = "upstream.stream.sse"
EXPECTED_FILE = "expected.json"
_READY = b"event: ready\n"


def load_rounds(path: str | Path) -> list[bytes]:
    """The rounds of a recording given as its ``.sse`` file or its sample folder."""
    path = Path(path)
    if path.is_dir():
        path = path / STREAM_FILE
    return split_rounds(path.read_bytes())


def load_expected(sample: str | Path) -> dict[str, Any]:
    """What a recorded sample's answer must come out as (its ``expected.json``)."""
    expected: dict[str, Any] = json.loads((Path(sample) / EXPECTED_FILE).read_text("utf-8"))
    return expected


def split_rounds(raw: bytes) -> list[bytes]:
    """Split a recording before each ``event: ready`` line, from its first ``event:`` line."""
    body = raw if raw.startswith(b"event:") else raw[raw.find(b"\nevent:") + 1:]
    cuts = [0] + [i + 1 for i in _find_all(body, b"\n" + _READY)]
    return [body[a:b] for a, b in zip(cuts, cuts[1:] + [len(body)]) if body[a:b]]


def _find_all(data: bytes, needle: bytes) -> list[int]:
    found, at = [], data.find(needle)
    while at != -1:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def split_events(round_bytes: bytes) -> list[bytes]:
    """Cut one round into SSE events (each ending with its blank line), bytes kept exact."""
    parts = round_bytes.split(b"\n\n")
    events = [p + b"\n\n" for p in parts[:-1]]
    if parts[-1]:
        events.append(parts[-1])
    return events
