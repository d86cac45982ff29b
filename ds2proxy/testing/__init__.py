"""Test and demo support: a fake DeepSeek upstream and stream helpers.

:class:`FakeDeepSeek` imitates the web-chat API closely enough for the real
client to run against it (tests, ``--demo`` mode, benchmarks); the script
types choose what each completion streams. :func:`reconstruct` runs rounds
of SSE bytes through the stream parser and :func:`load_rounds` cuts a
recording into rounds.
"""

from __future__ import annotations

from .raw_client import RawClient
from .reconstruct import Reconstruction, reconstruct
from .recordings import load_expected, load_rounds, split_rounds
from .scripts import (
    Delivery,
    EnvelopeFault,
    HttpFault,
    Misbehaviour,
    Replay,
    Script,
    Scripted,
    SearchHit,
    echo_script,
)
from .server import FakeDeepSeek
from .state import CallRecord, FakeAccount

__all__ = [
    "CallRecord",
    "Delivery",
    "EnvelopeFault",
    "FakeAccount",
    "FakeDeepSeek",
    "HttpFault",
    "Misbehaviour",
    "RawClient",
    "Reconstruction",
    "Replay",
    "Script",
    "Scripted",
    "SearchHit",
    "echo_script",
    "load_expected",
    "load_rounds",
    "reconstruct",
    "split_rounds",
]
