"""Server-rendered SVG bar charts for the dashboard (no JavaScript needed).

A chart is one bar per time bucket over a window, empty buckets drawn as
gaps, with the peak value and the window's ends labelled; each bar carries a
``<title>`` so hovering shows its exact figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD, AXIS = 600, 150, 4, 18


@dataclass(frozen=True, slots=True)
class Window:
    """``span`` seconds ending now, in buckets of ``step`` seconds."""

    name: str
    grain: str
    step: int
    span: int


HOUR = Window("last hour", "minute", 60, 3600)
DAY = Window("last day", "hour", 3600, 86400)


def buckets(rows: list[dict[str, Any]], window: Window, now: float, metric: str
            ) -> list[tuple[int, float]]:
    """(bucket start, value) for every bucket of the window, zeros filled in."""
    by_bucket = {int(r["bucket"]): r for r in rows}
    last = int(now // window.step) * window.step
    first = last - window.span + window.step
    return [(b, float(_metric(by_bucket.get(b), metric)))
            for b in range(first, last + 1, window.step)]


def _metric(row: dict[str, Any] | None, metric: str) -> float:
    if row is None:
        return 0
    if metric == "tokens":
        return (row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0)
    return row.get(metric) or 0


def _figure(value: float) -> str:
    """A count as people read it (``1,234,567``): ``:g`` wrote ``1.23457e+06``,
    off by hundreds, once an hour held a million tokens."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _label(ts: int, step: int) -> str:
    fmt = "%H:%M" if step < 86400 else "%m-%d"
    return datetime.fromtimestamp(ts, timezone.utc).strftime(fmt)


def bar_chart(points: list[tuple[int, float]], *, title: str, unit: str, step: int,
              css: str = "") -> Markup:
    """An accessible SVG of ``points`` (UTC bucket labels)."""
    peak = max((v for _, v in points), default=0)
    total = sum(v for _, v in points)
    n = max(1, len(points))
    slot = (WIDTH - 2 * PAD) / n
    plot = HEIGHT - AXIS - PAD
    bars = []
    for i, (ts, value) in enumerate(points):
        if not value:
            continue
        h = max(1.0, plot * value / peak)
        x, y = PAD + i * slot, PAD + plot - h
        tip = f"{_label(ts, step)} UTC: {_figure(value)} {unit}"
        bars.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(1.0, slot - 1):.1f}" '
                    f'height="{h:.1f}"><title>{escape(tip)}</title></rect>')
    first = _label(points[0][0], step) if points else ""
    last = _label(points[-1][0], step) if points else ""
    label = f"{title}: {_figure(total)} {unit} in all, peak {_figure(peak)}"
    svg = (f'<svg class="chart {escape(css)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
           f'<title>{escape(label)}</title>'
           f'<line class="axis" x1="{PAD}" y1="{PAD + plot}" x2="{WIDTH - PAD}" '
           f'y2="{PAD + plot}" stroke="currentColor" stroke-opacity="0.3"/>'
           + "".join(bars) +
           f'<text x="{PAD}" y="{HEIGHT - 4}" font-size="11" fill="currentColor">'
           f'{escape(first)}</text>'
           f'<text x="{WIDTH - PAD}" y="{HEIGHT - 4}" font-size="11" text-anchor="end" '
           f'fill="currentColor">{escape(last)} UTC</text>'
           f'<text x="{PAD + 2}" y="14" font-size="11" fill="currentColor">'
           f'peak {_figure(peak)}</text></svg>')
    return Markup(svg)


def charts_for(rows: list[dict[str, Any]], window: Window, now: float,
               metrics: tuple[tuple[str, str, str], ...]) -> list[dict[str, Any]]:
    """One chart per (metric, title, unit) over ``window``."""
    out = []
    for metric, title, unit in metrics:
        points = buckets(rows, window, now, metric)
        out.append({"title": f"{title} per {window.grain} ({window.name})", "metric": metric,
                    "total": sum(v for _, v in points),
                    "svg": bar_chart(points, title=title, unit=unit, step=window.step,
                                     css=metric)})
    return out


OVERVIEW_METRICS = (("requests", "Requests", "requests"),
                    ("tokens", "Tokens", "tokens"),
                    ("errors", "Errors", "errors"))
