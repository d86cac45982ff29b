"""Stop-sequence matcher cost: how fast answer text passes through it.

Run: python bench/stop_bench.py   (a few seconds)

The answer is fed in web-chat-sized fragments (a few characters each) with
no match, the worst case: every fragment is searched and the tail checked.
Last, the worst stops for the tail check: the 256 an Ollama request may
send, each a long run of "a" then "b"s, against an answer of "a"s.
"""

from __future__ import annotations

import time

from ds2proxy.stops import StopMatcher

TEXT = ("The quick brown fox jumps over the lazy dog. " * 4000)
FRAGMENT = 3
CASES = {
    "no stops": (),
    "1 stop": ("<|end|>",),
    "4 stops": ("<|end|>", "\n\nUser:", "STOP", "###"),
    "4 stops, long": ("x" * 200, "y" * 200, "\n\nObservation:", "Final Answer:"),
}


SELF_SIMILAR = tuple("a" * (300 + i) + "b" * (699 - i) for i in range(256))


def run(stops: tuple[str, ...], text: str = TEXT) -> float:
    pieces = [text[i:i + FRAGMENT] for i in range(0, len(text), FRAGMENT)]
    matcher = StopMatcher(stops)
    start = time.perf_counter()
    out = [matcher.feed(piece) for piece in pieces]
    out.append(matcher.flush())
    elapsed = time.perf_counter() - start
    assert "".join(out) == text
    return len(pieces) / elapsed


def main() -> None:
    print(f"{len(TEXT)} characters in {FRAGMENT}-character fragments")
    for name, stops in CASES.items():
        best = max(run(stops) for _ in range(3))
        print(f"{name:>14}: {best / 1e6:6.2f} M fragments/s ({best * FRAGMENT / 1e6:6.1f} M chars/s)")
    chars = FRAGMENT * run(SELF_SIMILAR, "a" * 6000)
    print(f"256 self-similar stops of 1000 characters: {chars:,.0f} chars/s")


if __name__ == "__main__":
    main()
