"""The analytics page's charts, drawn as SVG on the server: no chart script, nothing inline
that the Content-Security-Policy would refuse (colours come from the stylesheet, by class),
and each chart is an image with a title and a description for screen readers, with its numbers
in a table beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

WIDTH = 720
BAR = 26
GAP = 10
LABEL = 150
"""Room for a horizontal bar's label, left of it."""


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str
    """What is written at the bar's end (the value, formatted)."""
    css: str = "bar"


def _svg(title: str, description: str, height: int, body: list[str], key: str) -> Markup:
    """Every text in `body` went through `escape`; numbers and class names are ours."""
    return Markup(  # noqa: S704
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img"'
        f' aria-labelledby="{key}-title {key}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{key}-title">{escape(title)}</title>'
        f'<desc id="{key}-desc">{escape(description)}</desc>{"".join(body)}</svg>'
    )


def bars(key: str, title: str, description: str, rows: Sequence[Bar]) -> Markup:
    """Horizontal bars, one per row, scaled to the largest value."""
    top = max((r.value for r in rows), default=0) or 1
    room = WIDTH - LABEL - 90
    body = []
    for i, row in enumerate(rows):
        y = i * (BAR + GAP)
        width = max(row.value / top * room, 1 if row.value else 0)
        body.append(
            f'<text class="label" x="{LABEL - 8}" y="{y + BAR * 0.68:.1f}" text-anchor="end">'
            f"{escape(row.label)}</text>"
            f'<rect class="{escape(row.css)}" x="{LABEL}" y="{y}" width="{width:.1f}"'
            f' height="{BAR}" rx="3"/>'
            f'<text class="value" x="{LABEL + width + 6:.1f}" y="{y + BAR * 0.68:.1f}">'
            f"{escape(row.text)}</text>"
        )
    height = max(len(rows) * (BAR + GAP), BAR)
    return _svg(title, description, height, body, key)


def stacked_days(
    key: str,
    title: str,
    description: str,
    days: Sequence[date],
    series: dict[str, dict[date, int]],
) -> Markup:
    """One column per day, stacked by series (a channel), with the legend below."""
    plot_height, axis = 200, 24
    totals = {d: sum(s.get(d, 0) for s in series.values()) for d in days}
    top = max(totals.values(), default=0) or 1
    step = (WIDTH - 40) / max(len(days), 1)
    width = max(step * 0.7, 2)
    body = [
        f'<text class="value" x="0" y="12">{top}</text>'
        f'<line class="axis" x1="36" y1="{plot_height}" x2="{WIDTH}" y2="{plot_height}"/>'
    ]
    for i, day in enumerate(days):
        x = 40 + i * step
        y = float(plot_height)
        for name, values in series.items():
            count = values.get(day, 0)
            if not count:
                continue
            h = count / top * (plot_height - 10)
            y -= h
            body.append(
                f'<rect class="ch-{escape(name)}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}"'
                f' height="{h:.1f}"><title>{escape(name)}, {day:%d %b}: {count}</title></rect>'
            )
        if len(days) <= 14 or i % max(len(days) // 10, 1) == 0:
            body.append(
                f'<text class="value" x="{x:.1f}" y="{plot_height + 16}">{day:%d %b}</text>'
            )
    legend_y = plot_height + axis + 8
    for i, name in enumerate(series):
        x = 40 + i * 110
        body.append(
            f'<rect class="ch-{escape(name)}" x="{x}" y="{legend_y}" width="14" height="14"/>'
            f'<text class="label" x="{x + 20}" y="{legend_y + 12}">{escape(name)}</text>'
        )
    return _svg(title, description, legend_y + 24, body, key)
