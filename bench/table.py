"""The results table of `docs/benchmarks.md`: one row per figure of every scenario, the machine
and the command, between two marker comments that `make bench` rewrites (the rest of the page
is left as it is)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.results import Figure, ScenarioResult

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
COMMAND = "make bench"
DASH = "\u2013"
"""En dash: nothing to show, and the range of a spread."""


def number(value: float) -> str:
    """Three significant figures or more, with thousands separators."""
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _goal(figure: Figure) -> str:
    if figure.goal is None:
        return DASH
    return f"{'≥' if figure.higher_is_better else '≤'} {figure.goal:.2f}x"


def _met(figure: Figure) -> str:
    met = figure.met
    return DASH if met is None else ("yes" if met else "**no**")


def row(scenario: str, figure: Figure) -> str:
    baseline = figure.baseline
    ratio = figure.ratio
    low, high = figure.spread
    cells = [
        scenario,
        figure.what,
        f"{number(figure.ours)} {figure.unit}",
        DASH if baseline is None else f"{number(baseline)} ({figure.baseline_name})",
        DASH if ratio is None else f"{ratio:.2f}x",
        _goal(figure),
        _met(figure),
        f"{number(low)}{DASH}{number(high)}",
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_rows(results: Sequence[ScenarioResult]) -> str:
    """The table itself: a header, then one row per figure."""
    lines = [
        "| scenario | what | ours | baseline | ratio | goal | met | spread (our rounds) |",
        "| --- | --- | ---: | ---: | ---: | :---: | :---: | ---: |",
    ]
    for result in results:
        lines += [row(result.slug, figure) for figure in result.figures]
    return "\n".join(lines)


def machine(about: Mapping[str, object]) -> str:
    """One line: cores, PostgreSQL, Python, event loop, commit and date of a run."""
    postgres = str(about.get("postgres", "PostgreSQL ?"))
    short = " ".join(postgres.split()[:2])
    return (
        f"{about.get('cpu_cores', '?')} cores, {short}, Python {about.get('python', '?')},"
        f" {about.get('event_loop', '?')}; commit {about.get('code', '?')},"
        f" {about.get('started_at', '?')}"
    )


def render_section(
    results: Sequence[ScenarioResult],
    about: Mapping[str, object],
    doc: Path,
    out: Path,
    command: str = COMMAND,
) -> str:
    """What goes between the markers: the table, the machine, the command, the plots (linked
    relative to `doc`), and where a scenario's figures come from an earlier run, which one."""
    lines = [render_rows(results), "", f"Machine: {machine(about)}. Command: `{command}`."]
    earlier = [r for r in results if r.about.get("code") != about.get("code")]
    if earlier:
        lines += [""] + [f"`{r.slug}` is from an earlier run: {machine(r.about)}." for r in earlier]
    links = [
        f"[{r.slug}]({Path(os.path.relpath(out / f'{r.slug}.png', doc.parent)).as_posix()})"
        for r in results
    ]
    lines += ["", "Plots: " + ", ".join(links) + "."]
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """`text` with what lies between the markers replaced by `section`; the markers are put
    under the first title if absent."""
    block = f"{BEGIN}\n{section}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _match: block, text, count=1)
    lines = text.splitlines(keepends=True)
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if title is None:
        return f"{block}\n\n{text}"
    head, tail = "".join(lines[: title + 1]), "".join(lines[title + 1 :])
    return f"{head}\n{block}\n{tail}"
