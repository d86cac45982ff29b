"""The tokens a turn's usage reports, and the cut at the client's max_tokens.

Usage counts the text as the model wrote it (tool-call markup included),
accumulated, never fragment by fragment (see :mod:`ds2proxy.token_stream`).
Reasoning the client does not see (thinking off, and the upstream thought
all the same) was generated too, so it is counted as reasoning tokens, as
the official APIs count the reasoning they hide; it does not shorten the
answer under max_tokens, which bounds what the client is shown. Answers the
model gave before a retry in the same turn (empty output, bad JSON) were
each their own text, so each is counted on its own.
"""

from __future__ import annotations

from .token_stream import StreamCount


class TurnCounts:
    """Reasoning (shown and hidden) and answer tokens of one turn."""

    def __init__(self, max_tokens: int | None) -> None:
        self.max_tokens = max_tokens
        self.reasoning = StreamCount()
        self.answer = StreamCount()
        self.hidden = StreamCount()
        # Tokens of the answers before a retry: the shown part (under the
        # limit) and the hidden reasoning.
        self._earlier_shown = self._earlier_reasoning = self._earlier_answers = 0

    def within_limit(self, text: str, counter: StreamCount, other: StreamCount
                     ) -> tuple[str, bool]:
        """``text`` fed to ``counter``, cut on the token where shown
        reasoning plus answer reach max_tokens; whether the limit was hit."""
        limit = self.max_tokens
        if not limit:
            counter.feed(text)
            return text, False
        cap = limit - other.total() - self._earlier_shown
        if cap <= 0:
            return "", True
        return counter.feed_within(text, cap)

    @property
    def reasoning_tokens(self) -> int:
        return self._earlier_reasoning + self.reasoning.total() + self.hidden.total()

    @property
    def completion_tokens(self) -> int:
        """Answer plus reasoning tokens: each text counted as a whole."""
        return self._earlier_answers + self.answer.total() + self.reasoning_tokens

    @property
    def produced(self) -> bool:
        """Whether the model wrote anything yet (cheap: no count runs)."""
        return bool(self._earlier_answers or self._earlier_reasoning or self.answer.upper_bound
                    or self.reasoning.upper_bound or self.hidden.upper_bound)

    @property
    def uncounted_chars(self) -> int:
        """Characters the totals would still have to encode."""
        return (self.answer.uncounted_chars + self.reasoning.uncounted_chars
                + self.hidden.uncounted_chars)

    def restart(self) -> None:
        """A second try: the texts so far carry on in the totals."""
        shown = self.reasoning.total() + self.answer.total()
        self._earlier_shown += shown
        self._earlier_reasoning += self.reasoning.total() + self.hidden.total()
        self._earlier_answers += self.answer.total()
        self.reasoning, self.answer, self.hidden = StreamCount(), StreamCount(), StreamCount()
