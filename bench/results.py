"""What every `make bench` scenario reports: each figure beside its baseline measured in the same
run, every round kept (the spread), and optional series to plot. The runner (`bench.__main__`)
writes one `docs/bench/<slug>.json` and one `docs/bench/<slug>.png` per scenario from these."""

from __future__ import annotations

import statistics

import msgspec


class Figure(msgspec.Struct, frozen=True):
    """One measured quantity: ours and the baseline's, round by round (interleaved)."""

    what: str
    """What was measured, e.g. "HTTP append of one cart action"."""
    unit: str
    """"req/s", "events/s", "ms", "MiB"."""
    rounds: list[float]
    baseline_name: str | None = None
    """e.g. "bare insert", "RAW", "eventsourcing", "Message DB"; None: no baseline."""
    baseline_rounds: list[float] = msgspec.field(default_factory=list)
    higher_is_better: bool = True
    goal: float | None = None
    """The ratio ours/baseline must reach (at least, or at most when lower is better)."""

    @property
    def ours(self) -> float:
        return statistics.median(self.rounds)

    @property
    def baseline(self) -> float | None:
        return statistics.median(self.baseline_rounds) if self.baseline_rounds else None

    @property
    def ratio(self) -> float | None:
        baseline = self.baseline
        return None if not baseline else self.ours / baseline

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.rounds), max(self.rounds)

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if ratio is None or self.goal is None:
            return None
        return ratio >= self.goal if self.higher_is_better else ratio <= self.goal


class Series(msgspec.Struct, frozen=True):
    """A line to plot: (x, y) points, e.g. latency by history length."""

    label: str
    points: list[tuple[float, float]]


class ScenarioResult(msgspec.Struct, frozen=True):
    slug: str
    """File name stem under docs/bench/, e.g. "http-append"."""
    title: str
    command: str
    """The exact command that reproduces this scenario alone."""
    figures: list[Figure]
    series: list[Series] = msgspec.field(default_factory=list)
    x_label: str = ""
    y_label: str = ""
    about: dict[str, object] = msgspec.field(default_factory=dict)
    """The machine, the commit, PostgreSQL's version, the settings of the run."""


def to_builtins(result: ScenarioResult) -> dict[str, object]:
    """The result as JSON-ready values, each figure with its computed ours, baseline, ratio,
    spread and met beside its rounds (what a reader of the JSON wants without recomputing)."""
    data: dict[str, object] = msgspec.to_builtins(result)
    data["figures"] = [
        {
            **msgspec.to_builtins(figure),
            "ours": figure.ours,
            "baseline": figure.baseline,
            "ratio": figure.ratio,
            "spread": list(figure.spread),
            "met": figure.met,
        }
        for figure in result.figures
    ]
    return data


def to_json(result: ScenarioResult) -> bytes:
    return msgspec.json.format(msgspec.json.encode(to_builtins(result)), indent=2) + b"\n"


def from_json(data: bytes | str) -> ScenarioResult:
    """Read back what `to_json` wrote; the computed fields are ignored (they follow)."""
    return msgspec.json.decode(data, type=ScenarioResult)
