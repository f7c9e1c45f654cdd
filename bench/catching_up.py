"""What the in-process projection scenarios share: an async projection caught up from nothing,
the feed it cannot go below (reading and opening the same pages, writing nothing), and the
scenario's command line (`measure` for `make bench`, `main` to run it alone)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any
from uuid import uuid4

import asyncpg

from bench.appends import database_url
from bench.results import ScenarioResult, to_json
from continuity.projection import Projection
from continuity.runner import ProjectionRunner
from continuity.runtime import Runtime
from continuity.settings import Settings
from privacy.master_key import Keyring, MasterKey

PAGE = 500
Run = Callable[[argparse.Namespace, Callable[[str], None]], Coroutine[Any, Any, ScenarioResult]]


async def catch_up(
    runtime: Runtime, projection: Projection, events: int, *, rows: int | None = None
) -> float:
    """`projection` from nothing to the head of the log (`events` of its events): events/s.
    With `rows`, the table (named as the projection) must hold that many rows after."""
    await runtime.pool.execute(f"TRUNCATE {', '.join(t.name for t in projection.tables)}")
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


def customer_args(module: str, each: str) -> Callable[[Sequence[str] | None], argparse.Namespace]:
    """The command line of a scenario seeded customer by customer: `--customers` (`each` says
    how many events each makes), `--rounds`, `--quick` (100 customers, one round), `--json`."""

    def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
        parser = argparse.ArgumentParser(prog=f"python -m {module}")
        parser.add_argument("--customers", type=int, default=1_000, help=each)
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--quick", action="store_true", help="a smoke run")
        parser.add_argument("--json", type=str, default=None)
        args = parser.parse_args(argv)
        if args.quick:
            args.customers, args.rounds = 100, 1
        return args

    return parse_args


Measure = Callable[..., list[ScenarioResult]]
"""`measure(argv, *, progress=None)`: what `make bench` calls (bench.__main__)."""
Main = Callable[..., None]
"""`main(argv=None)`: the scenario run alone."""


def entry_points(
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace], run: Run
) -> tuple[Measure, Main]:
    """A scenario module's `measure` and `main`, from its command line and its `run`."""

    def measure(
        argv: Sequence[str], *, progress: Callable[[str], None] | None = None
    ) -> list[ScenarioResult]:
        args = parse_args(argv)
        return [asyncio.run(run(args, progress or (lambda _text: None)))]

    def main(argv: Sequence[str] | None = None) -> None:
        """Run the scenario alone: progress on stderr, each figure on stdout, `--json PATH`."""
        args = parse_args(argv)
        result = asyncio.run(run(args, lambda text: print(text, file=sys.stderr, flush=True)))
        for figure in result.figures:
            ratio = f"{figure.ratio:.2f}x {figure.baseline_name}" if figure.ratio else ""
            print(f"{figure.what}: {figure.ours:,.3f} {figure.unit} {ratio}")
        if args.json:
            with open(args.json, "wb") as out:
                out.write(to_json(result))

    return measure, main


async def rounds(
    runtime: Runtime,
    projection: Projection,
    events: int,
    count: int,
    progress: Callable[[str], None],
    *,
    rows: int | None = None,
) -> tuple[list[float], list[float]]:
    """`count` rounds of the feed, then the catch-up, in turn: (catch-up, feed) events/s."""
    ours: list[float] = []
    feed: list[float] = []
    for n in range(count):
        progress(f"{projection.name} catch-up, round {n + 1} of {count}")
        feed.append(await feed_only(runtime, projection.topics))
        ours.append(await catch_up(runtime, projection, events, rows=rows))
    return ours, feed


@contextlib.asynccontextmanager
async def fresh_runtime(prefix: str) -> AsyncIterator[tuple[Runtime, str]]:
    """A runtime on a fresh schema named after `prefix` of the benchmark database, and that
    database's URL; the schema is dropped at the end."""
    url = database_url()
    schema = f"{prefix}_{uuid4().hex[:10]}"
    settings = Settings(database_schema=schema, jwt_secret="b" * 40, log_level="WARNING")
    runtime = await Runtime.open(settings, url, Keyring([MasterKey.generate()]))
    try:
        yield runtime, url
    finally:
        await runtime.close()
        conn = await asyncpg.connect(url)
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
