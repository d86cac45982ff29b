"""The dashboard's SVG charts: figures written as people read them, buckets
and labels in UTC whatever zone the server is in."""

from __future__ import annotations

import re
import time

import pytest

from ds2proxy.admin.charts import DAY, bar_chart, buckets, charts_for

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def test_a_million_tokens_reads_as_a_whole_number():
    svg = bar_chart([(0, 1_234_567.0), (3600, 5.0)], title="Tokens", unit="tokens", step=3600)
    assert "00:00 UTC: 1,234,567 tokens" in svg
    assert 'aria-label="Tokens: 1,234,572 tokens in all, peak 1,234,567"' in svg
    assert "peak 1,234,567</text>" in svg and "e+" not in svg


@pytest.fixture
def server_in_kolkata(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+5:30: local hours split UTC ones
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_hour_buckets_and_labels_are_utc_in_any_server_zone(server_in_kolkata):
    rows = [{"bucket": NOW - 3600, "requests": 3}]
    points = buckets(rows, DAY, NOW + 59, "requests")
    assert len(points) == 24 and points[-1] == (NOW, 0.0) and points[-2] == (NOW - 3600, 3.0)
    [chart, *_] = charts_for(rows, DAY, NOW + 59, (("requests", "Requests", "requests"),))
    assert chart["total"] == 3
    labels = re.findall(r">(\d\d:\d\d)(?: UTC)?</text>", str(chart["svg"]))
    assert labels == ["09:00", "08:00"]
    assert "07:00 UTC: 3 requests" in str(chart["svg"])
