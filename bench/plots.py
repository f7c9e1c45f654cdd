"""One PNG per scenario: ours beside the baseline for every figure (bars, the ratio written
above each pair, the spread of the rounds as error bars), grouped by unit, and the series as
lines underneath.

A series names its unit in the last parentheses of its label, "OURS append (events/s)"; series
with the same unit share a panel, so one scenario can plot rates and latencies together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from bench.results import Figure, ScenarioResult, Series
from bench.table import number

OURS_COLOUR = "#1f77b4"
BASELINE_COLOUR = "#b0b0b0"
_UNIT = re.compile(r"\(([^()]*)\)\s*$")
K = TypeVar("K")
V = TypeVar("V")


def series_unit(series: Series, default: str) -> str:
    found = _UNIT.search(series.label)
    return found.group(1) if found else default


def _grouped(items: Sequence[V], key: dict[int, K]) -> dict[K, list[V]]:
    groups: dict[K, list[V]] = {}
    for index, item in enumerate(items):
        groups.setdefault(key[index], []).append(item)
    return groups


def _bars(axes: Axes, unit: str, figures: list[Figure]) -> None:
    positions = range(len(figures))
    compared = any(f.baseline is not None for f in figures)
    width = 0.38
    shift = width / 2 if compared else 0.0
    ours = [f.ours for f in figures]
    low = [f.ours - f.spread[0] for f in figures]
    high = [f.spread[1] - f.ours for f in figures]
    axes.bar(
        [p - shift for p in positions],
        ours,
        width,
        yerr=[low, high],
        capsize=3,
        color=OURS_COLOUR,
        label="ours (median; error bars: min to max)",
    )
    baselines = [f.baseline or 0.0 for f in figures]
    if compared:
        axes.bar(
            [p + shift for p in positions],
            baselines,
            width,
            color=BASELINE_COLOUR,
            label="baseline (median)",
        )
    top = max([*ours, *baselines, 0.0]) or 1.0
    for position, figure in zip(positions, figures, strict=True):
        if figure.baseline is not None:
            axes.text(
                position + shift,
                (figure.baseline or 0.0) + top * 0.02,
                figure.baseline_name or "",
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90,
            )
        ratio = figure.ratio
        label = number(figure.ours) if ratio is None else f"{ratio:.2f}x"
        if ratio is not None and figure.met is not None:
            label += " ✓" if figure.met else " ✗"
        axes.text(
            position,
            max(figure.spread[1], figure.baseline or 0.0) + top * 0.25,
            label,
            ha="center",
            va="bottom",
            fontsize=9,
            fontweight="bold",
        )
    axes.set_ylim(0, top * 1.6)
    axes.set_xticks(list(positions), [_wrap(f.what) for f in figures], fontsize=7)
    axes.set_ylabel(unit)
    axes.yaxis.set_major_formatter(FuncFormatter(_thousands))
    axes.legend(fontsize=7, loc="upper left")
    axes.grid(axis="y", alpha=0.3)


def _thousands(value: float, _position: int | None = None) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def _wrap(text: str, width: int = 22) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def _lines(axes: Axes, unit: str, series: list[Series], x_label: str) -> None:
    xs = [x for s in series for x, _ in s.points]
    for one in series:
        axes.plot(
            [x for x, _ in one.points], [y for _, y in one.points], marker="o", label=one.label
        )
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel(unit)
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter(FuncFormatter(_thousands))
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)


def plot(result: ScenarioResult, path: Path) -> None:
    """Write the scenario's PNG to `path`."""
    by_unit = _grouped(result.figures, {i: f.unit for i, f in enumerate(result.figures)})
    lined = _grouped(
        result.series,
        {i: series_unit(s, result.y_label) for i, s in enumerate(result.series)},
    )
    panels = max(1, len(by_unit) + len(lined))
    widest = max((len(figures) for figures in by_unit.values()), default=0)
    width = max(10.0, 1.1 * widest)  # room for every pair's labels
    fig, grid = plt.subplots(
        panels, 1, figsize=(width, 3.6 * panels), squeeze=False, layout="constrained"
    )
    try:
        axes = [a for [a] in grid]
        for ax, (unit, figures) in zip(axes, by_unit.items(), strict=False):
            _bars(ax, unit, figures)
        for ax, (unit, series) in zip(axes[len(by_unit) :], lined.items(), strict=True):
            _lines(ax, unit, series, result.x_label)
        fig.suptitle(result.title, fontsize=12)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
