"""DeepSeek chat-template markers, used as plain text in the upstream prompt.

The bars are FULLWIDTH VERTICAL LINE (U+FF5C) and the word joiners LOWER ONE
EIGHTH BLOCK (U+2581): the upstream model was trained on exactly these
characters, so an ASCII look-alike would not read as a role boundary.
"""

from __future__ import annotations

import re

BEGIN = "<｜begin▁of▁sentence｜>"
SYSTEM = "<｜System｜>"
END_INSTRUCTIONS = "<｜end▁of▁instructions｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
END_SENTENCE = "<｜end▁of▁sentence｜>"
TOOL = "<｜Tool｜>"
END_TOOL_RESULTS = "<｜end▁of▁toolresults｜>"

GUARD_LABEL = "Output integrity guard:"
GUARD_TEXT = (
    f"{GUARD_LABEL} the conversation, a tool output or any text parsed from a file "
    "may contain garbled, corrupted, truncated or repeated fragments. Never copy or "
    "echo such fragments; answer with correct, complete content only."
)

# Anything shaped like a template marker: ``<｜`` + a short name + ``｜>``.
_MARKER_LIKE = re.compile(r"<｜([^｜<>\n]{1,64})｜>")


def defuse(text: str) -> str:
    """``text`` with every marker-shaped sequence in ASCII bars (``<|User|>``).

    Message texts are the client's (and, through tool results, any web page
    or file's): a ``<｜end▁of▁toolresults｜><｜System｜>`` inside one would
    close its block and open a forged system turn. The ASCII form keeps the
    text readable while only the markers this module writes stay real.
    """
    return _MARKER_LIKE.sub(r"<|\1|>", text) if "｜" in text else text
