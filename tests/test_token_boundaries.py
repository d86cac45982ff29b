"""The ASCII shortcut of ``boundaries`` finds exactly what the general scan
finds (differential, on random ASCII texts, long words among them)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ds2proxy.token_pieces import _boundaries, boundaries

ASCII_TEXT = st.text(alphabet=st.sampled_from("ab Z\n\t.,-_ 9"), max_size=200)


@given(ASCII_TEXT, st.integers(min_value=0, max_value=50))
def test_ascii_boundaries_match_the_general_scan(text, lo):
    assert list(boundaries(text, lo)) == list(_boundaries(text, lo))


@given(st.text(alphabet=st.sampled_from("abZ9._-"), max_size=300),
       st.sampled_from(["", " ", "\n", " a", "\nb", "a ", "\t"]), st.integers(0, 300),
       st.integers(0, 320))
def test_a_long_word_has_no_boundary_unless_a_space_or_newline_follows(word, extra, at, lo):
    """The no-scan shortcut (no space nor newline from ``lo`` on) against the scan."""
    text = word[:at] + extra + word[at:]
    assert list(boundaries(text, lo)) == list(_boundaries(text, lo))
