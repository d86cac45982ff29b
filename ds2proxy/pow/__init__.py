"""DeepSeek's proof of work: the challenge, its solver and the answer header.

``IMPLEMENTATION`` says whether the compiled solver was built ("native") or
the pure-Python reference is in use ("python").
"""

from __future__ import annotations

from .backend import IMPLEMENTATION, deepseek_hash_v1, search
from .challenge import Challenge
from .header import decode_header, encode_header
from .solver import solve

__all__ = [
    "IMPLEMENTATION",
    "Challenge",
    "decode_header",
    "deepseek_hash_v1",
    "encode_header",
    "search",
    "solve",
]
