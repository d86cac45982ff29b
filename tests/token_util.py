"""The reference count tests compare usage with: the Rust tokenizer on the
packaged DeepSeek V4 vocabulary, one whole text at a time (no segments, no
cache, no streaming), so it checks ds2proxy's counting rather than repeats it."""

from __future__ import annotations

from functools import cache

from tokenizers import Tokenizer

from ds2proxy.tokenizer import vocabulary_dir


@cache
def _reference() -> Tokenizer:
    return Tokenizer.from_file(str(vocabulary_dir() / "tokenizer.json"))


def reference_tokens(text: str) -> int:
    return len(_reference().encode(text, add_special_tokens=False).ids)


def reference_counts(texts: list[str]) -> list[int]:
    """``reference_tokens`` of each text, encoded as one batch (many small
    texts cost one call into the tokenizer instead of one each)."""
    return [len(e.ids) for e in _reference().encode_batch(texts, add_special_tokens=False)]


def reference_ids(text: str) -> list[int]:
    return _reference().encode(text, add_special_tokens=False).ids


def reference_offsets(text: str) -> list[tuple[int, int]]:
    """Each token's (start, end) in characters."""
    return _reference().encode(text, add_special_tokens=False).offsets


def binary_file_tokens(size: int) -> int:
    """A binary upload counts one token per three bytes (documented)."""
    return -(-size // 3)
