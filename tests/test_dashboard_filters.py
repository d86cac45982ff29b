"""The dashboard's Jinja filters that shape what a template prints."""

from __future__ import annotations

import markupsafe

from ds2proxy.admin.dashboard import _breakable


def test_an_identifier_may_wrap_after_its_at_and_before_each_dot():
    assert _breakable("ann.lee@mail.example.com") == (
        "ann<wbr>.lee@<wbr>mail<wbr>.example<wbr>.com")
    assert _breakable("13800000000") == "13800000000"


def test_breakable_escapes_what_it_is_given():
    shown = _breakable('<img src=x onerror="alert(1)">@evil.example')
    assert isinstance(shown, markupsafe.Markup)
    assert "<img" not in shown and "&lt;img" in shown
    assert shown.endswith("@<wbr>evil<wbr>.example")
