"""Bar charts as plain geometry for the templates to draw as inline SVG.

Server-drawn SVG needs no chart library, no script and nothing from a CDN, reads on a
phone, and each chart comes with its numbers as a table for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 360
HEIGHT = 170
LABEL_SPACE = 34  # below the bars, for the category labels
TOP_SPACE = 14  # above the tallest bar, for its value


@dataclass(frozen=True)
class Bar:
    """One bar: its box in SVG units, the category and the value shown."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: float
    shown: str


@dataclass(frozen=True)
class BarChart:
    """A titled chart: its bars, its size and the largest value (the scale)."""

    title: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    maximum: float
    horizontal: bool = False


def _shown(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def bar_chart(
    title: str, points: Sequence[tuple[str, float]], horizontal: bool = False
) -> BarChart:
    """Bars for ``(label, value)`` points, vertical by default (horizontal for long labels)."""
    maximum = max((value for _, value in points), default=0.0) or 1.0
    bars: list[Bar] = []
    count = max(len(points), 1)
    if horizontal:
        row = 22.0
        height = int(row * count + 8)
        left = 150.0
        for i, (label, value) in enumerate(points):
            length = (WIDTH - left - 40) * value / maximum
            bars.append(Bar(left, 4 + i * row, length, row - 6, label[:24], value, _shown(value)))
        return BarChart(title, tuple(bars), WIDTH, height, maximum, horizontal=True)
    slot = WIDTH / count
    usable = HEIGHT - LABEL_SPACE - TOP_SPACE
    for i, (label, value) in enumerate(points):
        bar_height = usable * value / maximum
        bars.append(
            Bar(
                x=i * slot + slot * 0.15,
                y=TOP_SPACE + usable - bar_height,
                width=slot * 0.7,
                height=bar_height,
                label=label,
                value=value,
                shown=_shown(value),
            )
        )
    return BarChart(title, tuple(bars), WIDTH, HEIGHT, maximum)
