"""A run of stream frames built from one template: the payloads
``head + JSON(text) + tail`` for each of several texts.

A renderer hands the writer one :class:`PayloadRun` where it would hand a
pre-encoded payload per text delta (a chat stream's content chunks); the
writer frames the whole run at once (:meth:`PayloadRun.joined`), from one
JSON encode of all its texts, instead of an encode, two concatenations and a
framing per delta.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

_BOUNDARY = b'","'


@dataclass(frozen=True, slots=True)
class PayloadRun:
    """``head + orjson.dumps(text) + tail`` for each of ``texts`` (at least
    one), in order. ``head`` and ``tail`` hold no newline."""

    head: bytes
    tail: bytes
    texts: list[str]

    def payloads(self) -> list[bytes]:
        """The payloads one by one."""
        head, tail, dumps = self.head, self.tail, orjson.dumps
        return [head + dumps(text) + tail for text in self.texts]

    def joined(self, sep: bytes, before: bytes = b"", after: bytes = b"") -> bytes:
        """``before + sep.join(self.payloads()) + after``, built from one
        encode of the texts and copied once (a writer's framing around it).

        In the encoded list ``["t1","t2",…]`` every ``"`` is a string
        delimiter unless a text holds a quote (then it is written ``\\"``).
        Without one, ``","`` occurs only between two texts once the opening
        ``["`` is cut off (a text that is just a comma, ``","``, is then
        always preceded by the boundary that consumes its opening quote), so
        one replace puts the template around every text. A run with a quote
        in a text (or ending in a backslash, ``\\"`` again) is built one
        payload at a time.
        """
        encoded = orjson.dumps(self.texts)
        if b'\\"' in encoded or len(encoded) < 4:
            return b"".join([before, sep.join(self.payloads()), after])
        head, tail = self.head, self.tail
        inner = encoded[2:-1].replace(_BOUNDARY, b"".join([b'"', tail, sep, head, b'"']))
        return b"".join([before, head, b'"', inner, tail, after])
