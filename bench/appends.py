"""Append throughput and latency: our encrypted store against raw asyncpg and three peers.

    .venv/bin/python -m bench.appends [--seconds 5] [--warmup 1] [--scenarios 1,2,3,4]
        [--contenders OURS,RAW,PEER,MESSAGEDB,EMMETT] [--repeat 1] [--json PATH]

Scenarios: 1 writer with one event per append; 16 writers on distinct streams with one event
per append; 16 writers with batches of 10; 16 writers with batches of 100. Contenders: OURS,
the real encrypted write path; RAW, plain asyncpg INSERTs of rows of the same size (the
ceiling); PEER, eventsourcing's PostgreSQL recorder with its mapper and cipher (see
`bench.contenders`); MESSAGEDB, Message DB's `write_message` (`bench.message_db`); EMMETT,
Emmett's PostgreSQL event store in Node.js (`bench.emmett`). The two last ones come from npm
(bench/peers) and are skipped, with the reason, where node or npm is missing. Each contender
gets a fresh schema (Emmett a fresh database) per run, dropped afterwards, and a CHECKPOINT
before it starts. With --repeat N the contenders take turns N times (in rotating order) and
each one's median run is reported.

The database: CONTINUITY_BENCH_DATABASE_URL, else CONTINUITY_DATABASE_URL, else the local
server at postgresql://postgres@127.0.0.1:5432/test.

`measure(argv)` runs the same and returns the `make bench` runner's `ScenarioResult`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bench import contenders
from bench.emmett import emmett
from bench.message_db import message_db
from bench.node_peers import PeerUnavailable, node, node_modules
from bench.results import Figure, ScenarioResult, Series
from bench.timing import AsyncOp, Measurement, drive_async, drive_threads

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONTENDERS = ("OURS", "RAW", "PEER", "MESSAGEDB", "EMMETT")
BASELINE_NAMES = {
    "RAW": "RAW",
    "PEER": "eventsourcing",
    "MESSAGEDB": "Message DB",
    "EMMETT": "Emmett",
}
TARGET_VS_RAW = 0.60
"""OURS/RAW with concurrent writers."""
TARGET_VS_PEER = 3.0
"""OURS/PEER (eventsourcing) with concurrent writers."""
TARGET_VS_NO_SKIP_PEER = 1.5
"""OURS over the fastest peer that gives readers the same no-skip guarantee (Emmett;
eventsourcing, whose table lock serialises inserts), in every scenario."""
TARGET_AHEAD = 1.0
"""OURS ahead of every peer in every scenario (Message DB's guarantee is narrower)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    number: int
    writers: int
    batch: int

    @property
    def what(self) -> str:
        writers = "1 writer" if self.writers == 1 else f"{self.writers} writers"
        events = "1 event" if self.batch == 1 else f"{self.batch} events"
        return f"{writers}, {events}/append"

    @property
    def title(self) -> str:
        return f"{self.number}. {self.what}"


def goal(contender: str, scenario: Scenario) -> float | None:
    """The issue's goal for OURS/`contender` in `scenario`, None where it sets none."""
    concurrent = scenario.writers > 1
    if contender == "RAW":
        return TARGET_VS_RAW if concurrent else None
    if contender == "PEER":
        return TARGET_VS_PEER if concurrent else TARGET_VS_NO_SKIP_PEER
    if contender == "EMMETT":
        return TARGET_VS_NO_SKIP_PEER
    if contender == "MESSAGEDB":
        return TARGET_AHEAD
    return None


SCENARIOS = {
    1: Scenario(1, writers=1, batch=1),
    2: Scenario(2, writers=16, batch=1),
    3: Scenario(3, writers=16, batch=10),
    4: Scenario(4, writers=16, batch=100),
}


@dataclass(frozen=True, slots=True)
class Result:
    """Every run of one contender in one scenario, represented by its median run (by events/s;
    the lower middle one for an even number of runs)."""

    scenario: Scenario
    contender: str
    runs: list[Measurement]

    @property
    def measurement(self) -> Measurement:
        ordered = sorted(self.runs, key=lambda m: m.events_per_s)
        return ordered[(len(ordered) - 1) // 2]


def database_url() -> str:
    return (
        os.environ.get("CONTINUITY_BENCH_DATABASE_URL")
        or os.environ.get("CONTINUITY_DATABASE_URL")
        or DEFAULT_DSN
    )


def event_loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    try:
        import uvloop
    except ImportError:
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def code_version() -> str:
    """The commit the benchmark runs, "-dirty" if the working tree differs from it."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return described.stdout.strip() or "unknown"


def about_the_run(postgres: str, loop_name: str, **settings: Any) -> dict[str, Any]:
    """What a benchmark's results are about: when, which code, PostgreSQL, machine, loop and
    its own settings, and the load before it started."""
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "postgres": postgres,
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "event_loop": loop_name,
        **settings,
        "load_average_before": os.getloadavg(),
    }


async def server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        version: str = await conn.fetchval("SELECT version()")
    finally:
        await conn.close()
    return version


async def checkpoint(dsn: str) -> None:
    """Start each run with no dirty buffers left by the previous one (superuser only)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass
    finally:
        await conn.close()


AsyncContender = Callable[[str, int, int], contextlib.AbstractAsyncContextManager[list[AsyncOp]]]
ASYNC_CONTENDERS: dict[str, AsyncContender] = {
    "OURS": contenders.ours,
    "RAW": contenders.raw,
    "MESSAGEDB": message_db,
}


async def run_async(
    contender: str, dsn: str, scenario: Scenario, warmup: float, seconds: float
) -> Measurement:
    if contender == "EMMETT":
        return await emmett(dsn, scenario.writers, scenario.batch, warmup, seconds)
    async with ASYNC_CONTENDERS[contender](dsn, scenario.writers, scenario.batch) as ops:
        return await drive_async(ops, warmup, seconds)


def unavailable(chosen: Sequence[str]) -> dict[str, str]:
    """The chosen peers that cannot run here (no node or npm, or `npm ci` failed), and why."""
    needs = {"MESSAGEDB": (node_modules,), "EMMETT": (node, node_modules)}
    reasons: dict[str, str] = {}
    for contender in chosen:
        try:
            for check in needs.get(contender, ()):
                check()
        except PeerUnavailable as error:
            reasons[contender] = str(error)
    return reasons


def run_peer(dsn: str, scenario: Scenario, warmup: float, seconds: float) -> Measurement:
    with contenders.peer(dsn, scenario.writers, scenario.batch) as ops:
        return drive_threads(ops, warmup, seconds)


def ratio(results: Sequence[Result], scenario: Scenario, over: str) -> float | None:
    by_name = {r.contender: r.measurement for r in results if r.scenario == scenario}
    if "OURS" not in by_name or over not in by_name or by_name[over].events == 0:
        return None
    return by_name["OURS"].events_per_s / by_name[over].events_per_s


def _fmt_ratio(value: float | None, target: float | None) -> str:
    if value is None:
        return "n/a"
    if target is None:
        return f"{value:.2f}x"
    return f"{value:.2f}x ({'met' if value >= target else 'MISSED'} >= {target:g}x)"


def render(results: Sequence[Result], scenarios: Sequence[Scenario]) -> str:
    repeated = any(len(r.runs) > 1 for r in results)
    spread = " events/s of every run |" if repeated else ""
    lines = [
        f"| scenario | contender | events/s | appends/s | p50 ms | p99 ms |{spread}",
        "| --- | --- | ---: | ---: | ---: | ---: |" + (" ---: |" if repeated else ""),
    ]
    for scenario in scenarios:
        for result in (r for r in results if r.scenario == scenario):
            m = result.measurement
            runs = ", ".join(f"{run.events_per_s:,.0f}" for run in result.runs)
            lines.append(
                f"| {scenario.title} | {result.contender} | {m.events_per_s:,.0f}"
                f" | {m.appends_per_s:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} |"
                + (f" {runs} |" if repeated else "")
            )
    others = [c for c in CONTENDERS if c != "OURS" and any(r.contender == c for r in results)]
    lines += [
        "",
        "| scenario |" + "".join(f" OURS/{c} |" for c in others),
        "| --- |" + " ---: |" * len(others),
    ]
    for scenario in scenarios:
        cells = (_fmt_ratio(ratio(results, scenario, c), goal(c, scenario)) for c in others)
        lines.append(f"| {scenario.title} |" + "".join(f" {cell} |" for cell in cells))
    lines += [
        "",
        f"Goals: >= {TARGET_VS_RAW:g}x RAW and >= {TARGET_VS_PEER:g}x PEER (eventsourcing) with"
        f" 16 writers; >= {TARGET_VS_NO_SKIP_PEER:g}x the peers that give readers the same"
        f" no-skip guarantee (EMMETT, PEER) and ahead of MESSAGEDB in every scenario.",
    ]
    return "\n".join(lines)


def as_json(
    results: Sequence[Result],
    scenarios: Sequence[Scenario],
    about: dict[str, Any],
    skipped: dict[str, str],
) -> dict[str, Any]:
    others = [c for c in CONTENDERS if c != "OURS"]
    return {
        **about,
        "skipped": skipped,
        "results": [
            {
                "scenario": r.scenario.number,
                "title": r.scenario.title,
                "writers": r.scenario.writers,
                "batch": r.scenario.batch,
                "contender": r.contender,
                **asdict(r.measurement),
                "events_per_s": r.measurement.events_per_s,
                "appends_per_s": r.measurement.appends_per_s,
                "runs": [
                    {**asdict(m), "events_per_s": m.events_per_s, "appends_per_s": m.appends_per_s}
                    for m in r.runs
                ],
            }
            for r in results
        ],
        "ratios": [
            {
                "scenario": s.number,
                **{f"ours_over_{c.lower()}": ratio(results, s, c) for c in others},
                "goals": {c: goal(c, s) for c in others},
            }
            for s in scenarios
        ],
    }


def figures(results: Sequence[Result], scenarios: Sequence[Scenario]) -> list[Figure]:
    """One figure per (scenario, baseline) that both OURS and the baseline ran in."""
    found = {(r.scenario, r.contender): r for r in results}
    return [
        Figure(
            what=scenario.what,
            unit="events/s",
            rounds=[m.events_per_s for m in found[scenario, "OURS"].runs],
            baseline_name=BASELINE_NAMES[contender],
            baseline_rounds=[m.events_per_s for m in found[scenario, contender].runs],
            goal=goal(contender, scenario),
        )
        for scenario in scenarios
        for contender in CONTENDERS
        if contender != "OURS" and (scenario, "OURS") in found and (scenario, contender) in found
    ]


def series(results: Sequence[Result], scenarios: Sequence[Scenario]) -> list[Series]:
    """Each contender's median events/s by scenario number, for a bar plot (the median of its
    rounds, as `Figure` takes it)."""
    return [
        Series(
            label=contender,
            points=[
                (float(r.scenario.number), statistics.median(m.events_per_s for m in r.runs))
                for scenario in scenarios
                for r in results
                if r.scenario == scenario and r.contender == contender
            ],
        )
        for contender in CONTENDERS
        if any(r.contender == contender for r in results)
    ]


def _choices(text: str, allowed: Sequence[str]) -> list[str]:
    chosen = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
    return chosen


Number = TypeVar("Number", int, float)


def _positive(kind: type[Number]) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.appends", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--seconds", type=_positive(float), default=5.0, help="measured time per run"
    )
    parser.add_argument(
        "--warmup", type=_positive(float), default=1.0, help="unmeasured time before it"
    )
    parser.add_argument(
        "--scenarios",
        type=lambda text: [int(n) for n in _choices(text, [str(k) for k in SCENARIOS])],
        default=list(SCENARIOS),
        help="comma-separated scenario numbers (1,2,3,4)",
    )
    parser.add_argument(
        "--contenders",
        type=lambda text: _choices(text, CONTENDERS),
        default=list(CONTENDERS),
        help=f"comma-separated, of {','.join(CONTENDERS)}",
    )
    parser.add_argument(
        "--repeat",
        type=_positive(int),
        default=1,
        help="runs per contender, interleaved; the median run is reported",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    return parser.parse_args(argv)


@dataclass(frozen=True, slots=True)
class Run:
    """What one invocation measured, and what it was about."""

    results: list[Result]
    scenarios: list[Scenario]
    about: dict[str, Any]
    summary: str
    skipped: dict[str, str]


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> Run:
    dsn = database_url()
    scenarios = [SCENARIOS[n] for n in args.scenarios]
    skipped = unavailable(args.contenders)
    for contender, reason in skipped.items():
        progress(f"{contender} skipped: {reason}")
    chosen = [c for c in CONTENDERS if c in args.contenders and c not in skipped]
    loop_name, loop_factory = event_loop_factory()
    results: list[Result] = []
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        postgres = runner.run(server_version(dsn))
        about = about_the_run(
            postgres,
            loop_name,
            seconds=args.seconds,
            warmup=args.warmup,
            repeat=args.repeat,
            contenders=chosen,
            skipped=skipped,
            payload_bytes=contenders.payload_sizes(),
        )
        summary = (
            f"code {about['code']}; {postgres}\n"
            f"{os.cpu_count()} cores, Python {platform.python_version()},"
            f" {loop_name}; {args.repeat} x {args.seconds:g} s per contender and scenario after"
            f" {args.warmup:g} s of warm-up each; stored bytes per ItemAdded event:"
            f" {about['payload_bytes']}; load average before {os.getloadavg()[0]:.2f}"
        )
        progress(summary)
        for scenario in scenarios:
            runs: dict[str, list[Measurement]] = {c: [] for c in chosen}
            for round_ in range(args.repeat if chosen else 0):
                # Rotate the order so that no contender always runs first or last.
                shift = round_ % len(chosen)
                for contender in chosen[shift:] + chosen[:shift]:
                    runner.run(checkpoint(dsn))
                    if contender == "PEER":
                        measured = run_peer(dsn, scenario, args.warmup, args.seconds)
                    else:
                        measured = runner.run(
                            run_async(contender, dsn, scenario, args.warmup, args.seconds)
                        )
                    runs[contender].append(measured)
                    progress(
                        f"  {scenario.title:<33} {contender:<9}"
                        f" {measured.events_per_s:>10,.0f} events/s"
                        f"  p50 {measured.p50_ms:6.2f} ms  p99 {measured.p99_ms:6.2f} ms"
                    )
            results += [Result(scenario, c, runs[c]) for c in chosen]
    about["load_average_after"] = os.getloadavg()
    return Run(results, scenarios, about, summary, skipped)


def measure(
    argv: Sequence[str], *, progress: Callable[[str], None] | None = None
) -> list[ScenarioResult]:
    """The `make bench` runner's view of one run: OURS against each baseline, round by round."""
    done = run(parse_args(argv), progress or (lambda _line: None))
    return [
        ScenarioResult(
            slug="appends",
            title="Store appends: OURS against raw asyncpg, eventsourcing, Message DB and Emmett",
            command=shlex.join(["python", "-m", "bench.appends", *argv]),
            figures=figures(done.results, done.scenarios),
            series=series(done.results, done.scenarios),
            x_label="scenario",
            y_label="events/s",
            about=done.about,
        )
    ]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    done = run(args, _stderr)
    print(f"{done.summary}, after {os.getloadavg()[0]:.2f}\n")
    print(render(done.results, done.scenarios))
    for contender, reason in done.skipped.items():
        print(f"\n{contender} skipped: {reason}")
    if args.json is not None:
        document = as_json(done.results, done.scenarios, done.about, done.skipped)
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
