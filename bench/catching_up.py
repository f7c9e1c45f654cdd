"""What the in-process projection scenarios share: an async projection caught up from nothing,
the feed it cannot go below (reading and opening the same pages, writing nothing), and the
scenario's command line (`measure` for `make bench`, `main` to run it alone)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bench.results import ScenarioResult, to_json
from continuity.projection import Projection
from continuity.runner import ProjectionRunner
from continuity.runtime import Runtime

PAGE = 500
Run = Callable[[argparse.Namespace, Callable[[str], None]], Coroutine[Any, Any, ScenarioResult]]


async def catch_up(
    runtime: Runtime, projection: Projection, events: int, *, rows: int | None = None
) -> float:
    """`projection` from nothing to the head of the log (`events` of its events): events/s.
    With `rows`, the table (named as the projection) must hold that many rows after."""
    await runtime.pool.execute(f"TRUNCATE {projection.name}")
    await runtime.pool.execute(
        "INSERT INTO tracking (name, position) VALUES ($1, 0)"
        " ON CONFLICT (name) DO UPDATE SET position = 0",
        projection.name,
    )
    runner = ProjectionRunner(runtime.store, runtime.mapper, projection, page_size=PAGE)
    started = time.perf_counter()
    while await runner.step():
        pass
    seconds = time.perf_counter() - started
    if rows is not None:
        written = await runtime.pool.fetchval(f"SELECT count(*) FROM {projection.name}")
        assert written == rows, f"{projection.name} holds {written} rows, not {rows}"
    return events / seconds


async def feed_only(runtime: Runtime, topics: Sequence[str]) -> float:
    """Reading and opening the pages of `topics`, applying nothing: events/s."""
    position, events = 0, 0
    started = time.perf_counter()
    while True:
        page = await runtime.store.select_notifications(
            position, PAGE, topics=topics, inclusive_of_start=False
        )
        if not page:
            break
        events += len(await runtime.mapper.to_envelopes(page))
        position = page[-1].position
    return events / (time.perf_counter() - started)


def measure(
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    run: Run,
    argv: Sequence[str],
    progress: Callable[[str], None] | None,
) -> list[ScenarioResult]:
    args = parse_args(argv)
    return [asyncio.run(run(args, progress or (lambda _text: None)))]


def main(
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    run: Run,
    argv: Sequence[str] | None,
) -> None:
    """Run the scenario alone: progress on stderr, each figure on stdout, `--json PATH`."""
    args = parse_args(argv)
    result = asyncio.run(run(args, lambda text: print(text, file=sys.stderr, flush=True)))
    for figure in result.figures:
        ratio = f"{figure.ratio:.2f}x {figure.baseline_name}" if figure.ratio else ""
        print(f"{figure.what}: {figure.ours:,.3f} {figure.unit} {ratio}")
    if args.json:
        with open(args.json, "wb") as out:
            out.write(to_json(result))
