"""Stacked bar charts as inline SVG, drawn on the server: no script, no CDN, nothing to vendor.

A chart takes one value per minute for each series; more minutes than ``MAX_BARS`` are put
into bins of several minutes, each bar then showing the mean per minute of its bin. Every bar
carries a ``<title>`` (the browser's tooltip) and the legend gives each series' total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

#: Bars drawn at most; longer windows are binned.
MAX_BARS = 180
WIDTH, HEIGHT = 960, 190
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 10, 24
#: Minutes between x-axis labels, the first that leaves at most ``MAX_LABELS`` labels.
LABEL_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720)
MAX_LABELS = 9


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked layer: a label, its colour (any CSS colour) and a value per minute."""

    label: str
    color: str
    values: list[int]

    @property
    def total(self) -> int:
        return sum(self.values)


def nice_ceiling(value: float) -> float:
    """The smallest 2, 4, 10 or 20 × 10ⁿ at least ``value`` (2 for nothing): the y axis' top,
    whose half (the middle grid line) is then a whole number of tasks too."""
    if value <= 2:
        return 2.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 4, 10, 20) if step * power >= value
                      and (step * power) % 2 == 0))


def bin_size(count: int) -> int:
    """Minutes per bar so that ``count`` minutes make at most MAX_BARS bars."""
    return max(1, math.ceil(count / MAX_BARS))


def _binned(values: list[int], size: int) -> list[float]:
    return [sum(values[i:i + size]) / size for i in range(0, len(values), size)]


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def stacked_bars(times: list[datetime], series: list[Series], *, title: str,
                 chart_id: str) -> SafeString:
    """A ``<figure>``: the legend with totals, then the SVG (``times`` are the minutes)."""
    size = bin_size(len(times))
    starts = times[::size]
    layers = [_binned(s.values, size) for s in series]
    heights = [sum(layer[i] for layer in layers) for i in range(len(starts))]
    top = nice_ceiling(max(heights, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / max(len(starts), 1)
    unit = "per minute" if size == 1 else f"per minute, mean of {size}-minute bins"
    parts = [_grid(top, plot_h), _labels(starts, size, bar_w)]
    for i, start in enumerate(starts):
        parts.append(_bar(i, start, size, bar_w, plot_h, top, series, layers))
    legend = format_html_join(
        "", '<span class="legend-item"><i style="background:{}"></i>{} <b>{}</b></span>',
        ((s.color, s.label, s.total) for s in series))
    return format_html(
        '<figure class="taskq-chart" id="{}"><figcaption><span class="chart-title">{}</span>'
        ' <span class="chart-unit">({})</span> {}</figcaption>'
        '<svg viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>'
        "</figure>", chart_id, title, unit, legend, WIDTH, HEIGHT, title,
        mark_safe("".join(parts)))  # noqa: S308 - numbers, and text through escape()


def _grid(top: float, plot_h: float) -> str:
    lines = []
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        lines.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}"'
                     f' y2="{y:.1f}"/><text class="ylabel" x="{LEFT - 6}" y="{y + 4:.1f}"'
                     f' text-anchor="end">{_number(top * fraction)}</text>')
    return "".join(lines)


def _labels(starts: list[datetime], size: int, bar_w: float) -> str:
    span = len(starts) * size
    step = next((s for s in LABEL_STEPS if s >= size and span / s <= MAX_LABELS),
                LABEL_STEPS[-1])
    labels = []
    for i, start in enumerate(starts):
        local = timezone.localtime(start)
        if (local.hour * 60 + local.minute) % step < size:
            x = LEFT + bar_w * (i + 0.5)
            labels.append(f'<text class="xlabel" x="{x:.1f}" y="{HEIGHT - 6}"'
                          f' text-anchor="middle">{local:%H:%M}</text>')
    return "".join(labels)


def _bar(i: int, start: datetime, size: int, bar_w: float, plot_h: float, top: float,
         series: list[Series], layers: list[list[float]]) -> str:
    gap = bar_w * 0.15 if bar_w > 4 else 0.0
    x, y = LEFT + bar_w * i + gap / 2, TOP + plot_h
    local = timezone.localtime(start).strftime("%H:%M")
    tip = " · ".join(f"{s.label} {_number(layer[i])}"
                     for s, layer in zip(series, layers, strict=True))
    rects = []
    for s, layer in zip(series, layers, strict=True):
        h = plot_h * layer[i] / top
        if h > 0:
            y -= h
            rects.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar_w - gap:.2f}"'
                         f' height="{h:.2f}" fill="{escape(s.color)}"/>')
    # A transparent full-height rect gives every bin a tooltip, empty ones too.
    return (f'<g class="bin"><title>{local} — {escape(tip)}</title><rect class="hit"'
            f' x="{x:.2f}" y="{TOP}" width="{bar_w - gap + 0.01:.2f}" height="{plot_h:.2f}"'
            f' fill="transparent"/>{"".join(rects)}</g>')
