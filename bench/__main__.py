"""`make bench`: every scenario in turn, with a progress display, then its results.

    .venv/bin/python -m bench [--only appends,http,rebuild,scale,applications,...] [--quick]
        [--out docs/bench] [--doc PATH] [--args NAME="OPTIONS"]...

Each scenario module (`bench.appends`, `bench.http`, `bench.rebuild`, `bench.scale`,
`bench.applications`, `bench.conversations`, `bench.timeline`, `bench.analytics`,
`bench.activity`, `bench.live`) is
imported only when its turn comes and exposes
`measure(argv, *, progress=None) -> list[ScenarioResult]`;
one that is not there yet is reported as not available and skipped. Every ScenarioResult is
written to `<out>/<slug>.json` (with its computed figures) and `<out>/<slug>.png`, and the table
between the markers of `--doc` (default: `benchmarks.md` beside `<out>`) is rewritten from every
`<out>/*.json`, so a run of some scenarios keeps the others' last results (marked as from an
earlier run). `--quick` gives each module its smoke-run options; `--args scale="--max-events
100000"` adds options of one module's own (after those).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.progress import (
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from bench.appends import about_the_run, database_url, event_loop_factory, server_version
from bench.plots import plot
from bench.results import ScenarioResult, from_json, to_json
from bench.table import COMMAND, render_rows, render_section, replace_section


@dataclass(frozen=True)
class Scenario:
    name: str
    module: str
    full: tuple[str, ...] = ()
    """Options for `make bench` (the module's defaults otherwise)."""
    quick: tuple[str, ...] = ()
    """Options for `--quick`: a short smoke run."""


SCENARIOS = (
    Scenario(
        "appends",
        "bench.appends",
        full=("--repeat", "3"),
        quick=("--seconds", "1", "--warmup", "0.5", "--scenarios", "2"),
    ),
    Scenario("http", "bench.http", quick=("--rounds", "1", "--seconds", "2", "--warmup", "0.5")),
    Scenario("rebuild", "bench.rebuild", quick=("--quick",)),
    Scenario("scale", "bench.scale", quick=("--quick",)),
    Scenario("applications", "bench.applications", quick=("--quick",)),
    Scenario("conversations", "bench.conversations", quick=("--quick",)),
    Scenario("timeline", "bench.timeline", quick=("--quick",)),
    Scenario("analytics", "bench.analytics", quick=("--quick",)),
    Scenario("activity", "bench.activity", quick=("--quick",)),
    Scenario("live", "bench.live", quick=("--quick",)),
    Scenario("sync", "bench.sync", quick=("--quick",)),
    Scenario("erasure", "bench.erasure", quick=("--quick",)),
)
NAMES = tuple(s.name for s in SCENARIOS)
Measure = Callable[..., list[ScenarioResult]]


def _names(text: str) -> list[str]:
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in NAMES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(NAMES)}")
    return chosen


def _extra(text: str) -> tuple[str, list[str]]:
    name, sep, options = text.partition("=")
    if not sep or name.strip().lower() not in NAMES:
        raise argparse.ArgumentTypeError(f'NAME="OPTIONS", NAME one of {", ".join(NAMES)}')
    return name.strip().lower(), shlex.split(options)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--only", type=_names, default=list(NAMES), help=",".join(NAMES))
    parser.add_argument("--quick", action="store_true", help="a short smoke run of each")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"), help="JSON and PNG here")
    parser.add_argument("--doc", type=Path, help="the page with the table (<out>/../benchmarks.md)")
    parser.add_argument(
        "--args",
        type=_extra,
        action="append",
        default=[],
        metavar='NAME="OPTIONS"',
        help="more options for one scenario module",
    )
    return parser.parse_args(argv)


def load(module: str) -> Measure | None:
    """The module's `measure`, or None if the module (or its `measure`) is not there yet."""
    try:
        loaded: ModuleType = importlib.import_module(module)
    except ImportError as error:
        if error.name == module:
            return None
        raise
    measure: Measure | None = getattr(loaded, "measure", None)
    return measure if callable(measure) else None


def call(measure: Measure, argv: list[str], progress: Callable[[str], None]) -> Any:
    if "progress" in inspect.signature(measure).parameters:
        return measure(argv, progress=progress)
    return measure(argv)


def write(result: ScenarioResult, out: Path) -> None:
    (out / f"{result.slug}.json").write_bytes(to_json(result))
    plot(result, out / f"{result.slug}.png")


def _module_index(result: ScenarioResult) -> int:
    for index, scenario in enumerate(SCENARIOS):
        if scenario.module in result.command:
            return index
    return len(SCENARIOS)


def every_result(fresh: Sequence[ScenarioResult], out: Path) -> list[ScenarioResult]:
    """This run's results and the earlier ones still in `out`, in scenario order."""
    slugs = {result.slug for result in fresh}
    earlier = [
        from_json(path.read_bytes())
        for path in sorted(out.glob("*.json"))
        if path.stem not in slugs
    ]
    return sorted([*fresh, *earlier], key=_module_index)


def update_doc(doc: Path, section: str) -> None:
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    doc.write_text(replace_section(text, section), encoding="utf-8")


def machine_about() -> dict[str, Any]:
    loop_name, loop_factory = event_loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        postgres = runner.run(server_version(database_url()))
    return about_the_run(postgres, loop_name)


def run(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """Run the chosen scenarios; returns the exit status (1 if any failed)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    console = console or Console(stderr=True)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    doc: Path = args.doc or out.parent / "benchmarks.md"
    extra: dict[str, list[str]] = {}
    for name, options in args.args:
        extra.setdefault(name, []).extend(options)
    about = machine_about()
    chosen = [s for s in SCENARIOS if s.name in args.only]
    fresh: list[ScenarioResult] = []
    failed: list[str] = []
    columns = (
        SpinnerColumn(finished_text="•"),
        TextColumn("[bold]{task.description:<8}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[step]}"),
    )
    # Two refreshes a second: the display takes next to no CPU from what it measures.
    with Progress(*columns, console=console, refresh_per_second=2) as progress:
        tasks: dict[str, TaskID] = {
            s.name: progress.add_task(s.name, total=1, start=False, step="waiting") for s in chosen
        }
        for scenario in chosen:
            task = tasks[scenario.name]
            progress.start_task(task)
            progress.update(task, step="starting")
            options = [*(scenario.quick if args.quick else scenario.full)]
            options += extra.get(scenario.name, [])

            def step(text: str, task: TaskID = task) -> None:
                progress.update(task, step=text)

            try:
                measure = load(scenario.module)
                if measure is None:
                    progress.update(task, completed=1, step="not available")
                    continue
                results: list[ScenarioResult] = call(measure, options, step)
                for result in results:
                    step(f"writing {result.slug}.json and {result.slug}.png")
                    write(result, out)
                fresh += results
                slugs = ", ".join(r.slug for r in results)
                progress.update(task, completed=1, step=f"done: {slugs}")
            except Exception:
                failed.append(scenario.name)
                progress.update(task, completed=1, step="[red]failed[/red]")
                console.print(traceback.format_exc(), markup=False, highlight=False)
    every = every_result(fresh, out)
    given = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join([".venv/bin/python", "-m", "bench", *given]) if given else COMMAND
    update_doc(doc, render_section(every, about, doc, out, command))
    print(render_rows(every))
    print(f"\nwrote {len(fresh)} result(s) to {out}/ and the table to {doc}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
