"""Server-side SVG charts: no script, no library, styled by the console's CSS classes.

Each chart is an `<svg role="img">` whose `<title>` and `<desc>` carry every value as text, each
mark has its own `<title>` (a tooltip on hover), and the page shows the same values in a table.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup

# A narrow drawing whose text is large in its own units: it scales down to a 360 px phone with
# text still about 13 px, and the page caps its width on a desktop (console.css `.chart`).
WIDTH: Final = 420
HEIGHT: Final = 240
LEFT: Final = 52
RIGHT: Final = 22
TOP: Final = 26
BOTTOM: Final = 34
EMPTY: Final = Markup('<p class="chart-empty" role="status">No data in these weeks yet.</p>')
_IDS = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Point:
    label: str  # x label (a week) or category
    value: float | None  # None: no data for this label
    text: str  # the value as people read it: "82 %", "36 h", "no data"


def _f(number: float) -> str:
    return f"{number:.1f}".rstrip("0").rstrip(".")


def _frame(title: str, points: Sequence[Point], body: Markup, css: str, height: int = HEIGHT) -> Markup:
    chart_id = f"chart-{next(_IDS)}"
    desc = "; ".join(f"{p.label}: {p.text}" for p in points)
    return Markup(
        '<svg class="chart {css}" viewBox="0 0 {width} {height}" role="img" aria-labelledby="{id}-t {id}-d" '
        'preserveAspectRatio="xMidYMid meet">'
        '<title id="{id}-t">{title}</title><desc id="{id}-d">{desc}</desc>{body}</svg>'
    ).format(css=css, width=WIDTH, height=height, id=chart_id, title=title, desc=desc, body=body)


_GRID: Final = Markup('<line class="grid" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"/>')
_TICK: Final = Markup('<text class="tick" x="{x}" y="{y}" text-anchor="{anchor}">{text}</text>')
_DOT: Final = Markup('<circle class="dot" cx="{x}" cy="{y}" r="5"><title>{label}: {text}</title></circle>')
_VALUE: Final = Markup('<text class="value" x="{x}" y="{y}" text-anchor="middle">{text}</text>')
_LINE: Final = Markup('<polyline class="line" points="{points}"/>')
_COLUMN: Final = Markup(
    '<rect class="bar" x="{x}" y="{y}" width="{w}" height="{h}"><title>{label}: {text}</title></rect>'
)
_BAR: Final = Markup(
    '<text class="tick" x="{lx}" y="{ty}" text-anchor="end">{short}</text>'
    '<rect class="bar" x="{x}" y="{y}" width="{w}" height="{h}"><title>{label}: {text}</title></rect>'
    '<text class="value" x="{vx}" y="{ty}">{text}</text>'
)


def _axes(top_value: float, fmt: Callable[[float], str], labels: Sequence[str], step: float) -> list[Markup]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = []
    shown: set[str] = set()
    for i in range(3):
        y = TOP + plot_h - plot_h * i / 2
        parts.append(_GRID.format(x1=LEFT, x2=WIDTH - RIGHT, y=_f(y)))
        text = fmt(top_value * i / 2)
        if text not in shown:  # "0, 0, 1" on a small scale: each tick once
            shown.add(text)
            parts.append(_TICK.format(x=LEFT - 6, y=_f(y + 5), anchor="end", text=text))
    every = max(1, math.ceil(len(labels) / 4))  # four labels fit at any width without colliding
    for i, label in enumerate(labels):
        if (len(labels) - 1 - i) % every == 0:  # always label the current week
            x = LEFT + step * i + step / 2
            parts.append(_TICK.format(x=_f(x), y=HEIGHT - BOTTOM + 16, anchor="middle", text=label))
    return parts


def _scale(points: Sequence[Point], fixed_max: float | None) -> float:
    if fixed_max is not None:
        return fixed_max
    highest = max((p.value for p in points if p.value is not None), default=0.0)
    if highest <= 0:
        return 1.0
    if highest <= 2:
        return 2.0  # counts: whole ticks 0, 1, 2
    magnitude = 10.0 ** math.floor(math.log10(highest))
    return next(m * magnitude for m in (1, 2, 4, 6, 8, 10) if highest <= m * magnitude)  # even half ticks


def line_chart(
    title: str, points: Sequence[Point], *, fmt: Callable[[float], str], fixed_max: float | None = None
) -> Markup:
    """A line over the labelled points; gaps where there is no data, a dot and its value per point."""
    if all(p.value is None for p in points):
        return EMPTY
    top_value = _scale(points, fixed_max)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(points))
    segments: list[list[str]] = [[]]
    dots = []
    for i, p in enumerate(points):
        if p.value is None:
            segments.append([])
            continue
        x = LEFT + step * i + step / 2
        y = TOP + plot_h - plot_h * min(p.value, top_value) / top_value
        segments[-1].append(f"{_f(x)},{_f(y)}")
        dots.append(_DOT.format(x=_f(x), y=_f(y), label=p.label, text=p.text))
        dots.append(_VALUE.format(x=_f(x), y=_f(y - 9), text=fmt(p.value)))
    lines = [_LINE.format(points=" ".join(seg)) for seg in segments if len(seg) > 1]
    body = Markup("").join([*_axes(top_value, fmt, [p.label for p in points], step), *lines, *dots])
    return _frame(title, points, body, "line-chart")


def column_chart(title: str, points: Sequence[Point], *, fmt: Callable[[float], str]) -> Markup:
    """One column per label with its value on top (zero-height where there is no data)."""
    if not any(p.value for p in points):
        return EMPTY
    top_value = _scale(points, None)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(points))
    bars = []
    for i, p in enumerate(points):
        h = plot_h * min(p.value or 0.0, top_value) / top_value
        x = LEFT + step * i + step * 0.15
        bars.append(
            _COLUMN.format(
                x=_f(x), y=_f(TOP + plot_h - h), w=_f(step * 0.7), h=_f(h), label=p.label, text=p.text
            )
        )
        if p.value:
            bars.append(_VALUE.format(x=_f(x + step * 0.35), y=_f(TOP + plot_h - h - 5), text=fmt(p.value)))
    body = Markup("").join([*_axes(top_value, fmt, [p.label for p in points], step), *bars])
    return _frame(title, points, body, "column-chart")


def bar_list(title: str, points: Sequence[Point]) -> Markup:
    """Horizontal bars for categories (ignore reasons, scopes), in the order given."""
    if not points:
        return EMPTY
    row_h, label_w = 30, 170
    top_value = _scale(points, None)
    bars = []
    for i, p in enumerate(points):
        y = 4 + row_h * i
        w = max(1.0, (WIDTH - label_w - 60) * (p.value or 0.0) / top_value)
        short = p.label if len(p.label) <= 18 else p.label[:17] + "…"
        bars.append(
            _BAR.format(
                lx=label_w - 8, ty=y + 16, short=short, x=label_w, y=y + 4, w=_f(w), h=row_h - 10,
                label=p.label, text=p.text, vx=_f(label_w + w + 6),
            )
        )  # fmt: skip
    height = max(row_h, row_h * len(points)) + 8
    return _frame(title, points, Markup("").join(bars), "bar-list", height)


def percent(value: float) -> str:
    return f"{value * 100:.0f} %"


def hours(value: float) -> str:
    return f"{value:.0f} h" if value < 72 else f"{value / 24:.1f} d"


def count(value: float) -> str:
    return f"{value:.0f}"
