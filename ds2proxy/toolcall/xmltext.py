"""XML character entities, decoded once and leniently.

Model output mixes escaped and unescaped text (``echo a &gt; b`` next to
``cd x && make``), so anything that is not a well-formed entity is kept as
written instead of being an error.
"""

from __future__ import annotations

import re

_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_ENTITY = re.compile(r"&(?:#[xX]([0-9a-fA-F]{1,6})|#([0-9]{1,7})|([A-Za-z]{2,4}));")


def decode_entities(text: str) -> str:
    """Replace the five XML entities and numeric references, in one pass."""
    if "&" not in text:
        return text
    return _ENTITY.sub(_replace, text)


def _replace(match: re.Match[str]) -> str:
    hex_code, dec_code, name = match.groups()
    if name is not None:
        return _NAMED.get(name, match.group(0))
    code = int(hex_code, 16) if hex_code is not None else int(dec_code)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or code == 0:
        return match.group(0)
    return chr(code)
