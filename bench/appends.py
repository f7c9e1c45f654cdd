"""Append throughput and latency: our encrypted store against raw asyncpg and eventsourcing.

    .venv/bin/python -m bench.appends [--seconds 5] [--warmup 1] [--scenarios 1,2,3]
        [--contenders OURS,RAW,PEER] [--repeat 1] [--json PATH]

Scenarios: 1 writer with one event per append; 16 writers on distinct streams with one event
per append; 16 writers with batches of 10. Contenders (see `bench.contenders`): OURS, the
real encrypted write path; RAW, plain asyncpg INSERTs of rows of the same size (the ceiling);
PEER, eventsourcing's PostgreSQL recorder with its mapper and cipher. Each contender gets a
fresh schema per run, dropped afterwards, and a CHECKPOINT before it starts. With --repeat N
the contenders take turns N times (in rotating order) and each one's median run is reported.

The database: CONTINUITY_BENCH_DATABASE_URL, else CONTINUITY_DATABASE_URL, else the local
server at postgresql://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bench import contenders
from bench.timing import Measurement, drive_async, drive_threads

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONTENDERS = ("OURS", "RAW", "PEER")
TARGET_VS_RAW = 0.60
TARGET_VS_PEER = 3.0


@dataclass(frozen=True, slots=True)
class Scenario:
    number: int
    writers: int
    batch: int

    @property
    def title(self) -> str:
        writers = "1 writer" if self.writers == 1 else f"{self.writers} writers"
        events = "1 event" if self.batch == 1 else f"{self.batch} events"
        return f"{self.number}. {writers}, {events}/append"


SCENARIOS = {
    1: Scenario(1, writers=1, batch=1),
    2: Scenario(2, writers=16, batch=1),
    3: Scenario(3, writers=16, batch=10),
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


async def run_async(
    contender: str, dsn: str, scenario: Scenario, warmup: float, seconds: float
) -> Measurement:
    start = contenders.ours if contender == "OURS" else contenders.raw
    async with start(dsn, scenario.writers, scenario.batch) as ops:
        return await drive_async(ops, warmup, seconds)


def run_peer(dsn: str, scenario: Scenario, warmup: float, seconds: float) -> Measurement:
    with contenders.peer(dsn, scenario.writers, scenario.batch) as ops:
        return drive_threads(ops, warmup, seconds)


def ratio(results: Sequence[Result], scenario: Scenario, over: str) -> float | None:
    by_name = {r.contender: r.measurement for r in results if r.scenario == scenario}
    if "OURS" not in by_name or over not in by_name or by_name[over].events == 0:
        return None
    return by_name["OURS"].events_per_s / by_name[over].events_per_s


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


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
    lines += [
        "",
        "| scenario | OURS/RAW | OURS/PEER | targets (16 writers: >= 0.60x RAW, >= 3x PEER) |",
        "| --- | ---: | ---: | --- |",
    ]
    for scenario in scenarios:
        vs_raw = ratio(results, scenario, "RAW")
        vs_peer = ratio(results, scenario, "PEER")
        verdict = "-"
        if scenario.writers == 16:
            verdict = ", ".join(
                (
                    _verdict("RAW", vs_raw, TARGET_VS_RAW),
                    _verdict("PEER", vs_peer, TARGET_VS_PEER),
                )
            )
        lines.append(
            f"| {scenario.title} | {_fmt_ratio(vs_raw)} | {_fmt_ratio(vs_peer)} | {verdict} |"
        )
    return "\n".join(lines)


def _verdict(name: str, value: float | None, target: float) -> str:
    if value is None:
        return f"vs {name}: n/a"
    return f"vs {name}: {'met' if value >= target else 'MISSED'}"


def as_json(
    results: Sequence[Result], scenarios: Sequence[Scenario], about: dict[str, Any]
) -> dict[str, Any]:
    return {
        **about,
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
                "ours_over_raw": ratio(results, s, "RAW"),
                "ours_over_peer": ratio(results, s, "PEER"),
            }
            for s in scenarios
        ],
    }


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
        help="comma-separated scenario numbers (1,2,3)",
    )
    parser.add_argument(
        "--contenders",
        type=lambda text: _choices(text, CONTENDERS),
        default=list(CONTENDERS),
        help="comma-separated, of OURS,RAW,PEER",
    )
    parser.add_argument(
        "--repeat",
        type=_positive(int),
        default=1,
        help="runs per contender, interleaved; the median run is reported",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    dsn = database_url()
    scenarios = [SCENARIOS[n] for n in args.scenarios]
    chosen = [c for c in CONTENDERS if c in args.contenders]
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
            payload_bytes=contenders.payload_sizes(),
        )
        summary = (
            f"code {about['code']}; {postgres}\n"
            f"{os.cpu_count()} cores, Python {platform.python_version()},"
            f" {loop_name}; {args.repeat} x {args.seconds:g} s per contender and scenario after"
            f" {args.warmup:g} s of warm-up each; stored bytes per ItemAdded event:"
            f" {about['payload_bytes']}; load average before {os.getloadavg()[0]:.2f}"
        )
        print(summary, file=sys.stderr)
        for scenario in scenarios:
            runs: dict[str, list[Measurement]] = {c: [] for c in chosen}
            for round_ in range(args.repeat):
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
                    print(
                        f"  {scenario.title:<32} {contender:<5}"
                        f" {measured.events_per_s:>10,.0f} events/s"
                        f"  p50 {measured.p50_ms:6.2f} ms  p99 {measured.p99_ms:6.2f} ms",
                        file=sys.stderr,
                    )
            results += [Result(scenario, c, runs[c]) for c in chosen]
    about["load_average_after"] = os.getloadavg()
    print(f"{summary}, after {os.getloadavg()[0]:.2f}\n")
    print(render(results, scenarios))
    if args.json is not None:
        args.json.write_text(json.dumps(as_json(results, scenarios, about), indent=2) + "\n")


if __name__ == "__main__":
    main()
