"""The ASCII shortcut of ``boundaries`` finds exactly what the general scan
finds (differential, on random ASCII texts)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ds2proxy.token_pieces import _boundaries, boundaries

ASCII_TEXT = st.text(alphabet=st.sampled_from("ab Z\n\t.,-_ 9"), max_size=200)


@given(ASCII_TEXT, st.integers(min_value=0, max_value=50))
def test_ascii_boundaries_match_the_general_scan(text, lo):
    assert list(boundaries(text, lo)) == list(_boundaries(text, lo))
