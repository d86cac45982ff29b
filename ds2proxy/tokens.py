"""Token counts for usage reports, estimated without a tokenizer file.

DeepSeek documents its tokenizer's rates as roughly 0.3 token per English
character and 0.6 token per Chinese character. The estimate applies the
English rate to ASCII and the Chinese rate to every other character (other
scripts, symbols and emoji split at least as finely under byte-level BPE).
Counting in tenths keeps it exact and deterministic; rounding up keeps any
non-empty text at one token or more, and adding text never lowers the count.
"""

from __future__ import annotations

ASCII_TENTHS = 3
OTHER_TENTHS = 6
ATTACHMENT_BYTES_PER_TOKEN = 3
_SLICE = 1 << 20  # count long texts in slices: no full-size copy


def _ascii_chars(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(len(text[i:i + _SLICE].encode("ascii", "ignore"))
               for i in range(0, len(text), _SLICE))


def count_tokens(text: str) -> int:
    """Estimated DeepSeek tokens in ``text``; 0 only for the empty string."""
    ascii_chars = _ascii_chars(text)
    tenths = ascii_chars * ASCII_TENTHS + (len(text) - ascii_chars) * OTHER_TENTHS
    return -(-tenths // 10)


def count_prompt_tokens(prompt: str, *, attachment_bytes: int = 0) -> int:
    """Prompt tokens of one request: the prompt text plus uploaded files.

    Uploaded bytes count one token per three bytes — deliberately high, as
    the web chat's own accounting of files is not visible.
    """
    file_tokens = -(-max(attachment_bytes, 0) // ATTACHMENT_BYTES_PER_TOKEN)
    return count_tokens(prompt) + file_tokens
