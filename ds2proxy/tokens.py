"""Token counts with the DeepSeek V4 tokenizer, cheap enough for every request.

A long text is counted in segments cut at safe boundaries (see
:mod:`ds2proxy.token_pieces`), so the sum of their counts is exactly the count
of the whole text. Segments are cut left to right, each at the first safe
boundary after ``SEGMENT_CHARS``, so a conversation that only grows keeps its
earlier segments, and their counts come from an LRU cache keyed by the
segment's hash: an agent resending its history pays only for the new part.
What is not cached is encoded off the event loop when it is large.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Iterable

from .token_pieces import boundaries
from .tokenizer import load

SEGMENT_CHARS = 2048
# The longest stretch without a safe boundary encoded in one piece. Encoding
# one pre-token (a giant word, a CJK run without punctuation) costs more than
# linear time and memory in its length (4 M letters: 7 s, 330 MB), so a
# longer stretch is cut every STRETCH_CHARS characters, where a token may
# straddle the cut: within a token or so of exact per cut, and linear.
STRETCH_CHARS = 32_768
OFF_LOOP_CHARS = 16_384
OFF_LOOP_SPLIT_CHARS = 262_144
CACHE_ENTRIES = 32_768
ATTACHMENT_BYTES_PER_TOKEN = 3
TEXT_MIME_TYPES = ("application/json", "application/xml", "application/javascript",
                   "application/x-yaml", "application/yaml", "application/toml")
TEXT_SUFFIXES = ("+json", "+xml", "+yaml")  # structured-syntax suffixes (RFC 6839)

_cache: OrderedDict[tuple[int, int], int] = OrderedDict()
# Counts also run in worker threads: a look-up and its refresh, or an insert
# and its evictions, must not interleave with another thread's.
_cache_lock = threading.Lock()


def segments(text: str, size: int = SEGMENT_CHARS, stretch: int = STRETCH_CHARS) -> list[str]:
    """``text`` cut at the first safe boundary after every ``size`` characters,
    and after ``stretch`` characters where no safe boundary comes sooner."""
    out: list[str] = []
    start = 0
    while len(text) - start > size:
        reach = start + max(stretch, size + 1)
        cut = next(boundaries(text, start + size, reach), None)
        if cut is None:
            if len(text) <= reach:
                break
            cut = reach  # no safe boundary within reach: see STRETCH_CHARS
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def _key(segment: str) -> tuple[int, int]:
    return len(segment), hash(segment)


def _lookup(parts: list[str]) -> tuple[int, list[str]]:
    """(tokens of the cached parts, the parts still to encode)."""
    known, missing = 0, []
    with _cache_lock:
        for part in parts:
            key = _key(part)
            tokens = _cache.get(key)
            if tokens is None:
                missing.append(part)
            else:
                _cache.move_to_end(key)
                known += tokens
    return known, missing


def _store(parts: list[str], counts: list[int]) -> int:
    with _cache_lock:
        for part, tokens in zip(parts, counts):
            _cache[_key(part)] = tokens
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return sum(counts)


def count_tokens(text: str) -> int:
    """DeepSeek V4 tokens in ``text``, on the calling thread (small texts)."""
    if not text:
        return 0
    known, missing = _lookup(segments(text))
    return known + _store(missing, load().count_many(missing))


def _hashed_segments(text: str) -> list[str]:
    parts = segments(text)
    for part in parts:
        hash(part)  # a str keeps its hash: the lookups on the loop reuse it
    return parts


async def count_tokens_async(text: str) -> int:
    """Like :func:`count_tokens`, encoding off the loop what is large and not
    cached (and for a very large text, cutting and hashing it there too)."""
    if not text:
        return 0
    if len(text) > OFF_LOOP_SPLIT_CHARS:
        parts = await asyncio.to_thread(_hashed_segments, text)
    else:
        parts = segments(text)
    known, missing = _lookup(parts)
    if sum(len(part) for part in missing) <= OFF_LOOP_CHARS:
        return known + _store(missing, load().count_many(missing))
    counts = await asyncio.to_thread(load().count_many, missing)
    return known + _store(missing, counts)


def _is_text_type(mime_type: str) -> bool:
    """Whether a MIME type names text, whatever its case and parameters
    (``application/json; charset=utf-8``, ``Text/Plain``, ``…+json``)."""
    base = mime_type.split(";", 1)[0].strip().lower()
    return (base.startswith("text/") or base in TEXT_MIME_TYPES
            or base.endswith(TEXT_SUFFIXES))


def _attachment_text(data: bytes, mime_type: str) -> str | None:
    """The text of a text-like upload, None for binary files."""
    if not _is_text_type(mime_type):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def count_attachment_tokens(files: Iterable[tuple[bytes, str]]) -> int:
    """Uploaded files, as (data, MIME type): text files count their tokens;
    for images and other binaries the web chat's own extraction is not
    visible, so they count one token per three bytes (deliberately high)."""
    total = 0
    for data, mime_type in files:
        text = _attachment_text(data, mime_type)
        if text is None:
            total += -(-len(data) // ATTACHMENT_BYTES_PER_TOKEN)
        else:
            total += await count_tokens_async(text)
    return total


async def warm_up() -> None:
    """Build the tokenizer off the loop before the first request needs it."""
    await asyncio.to_thread(load)
