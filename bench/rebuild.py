"""Rebuild rate of a projection from the log: the session view, decrypted and folded, in events/s.

    .venv/bin/python -m bench.rebuild [--subjects 2000] [--events-per-subject 50]
        [--page-size 5000] [--repeat 3] [--burst 5] [--batch 2000]
        [--contenders OURS,CEILING,RAW] [--no-gc] [--profile PATH] [--json PATH]

Setup (not timed): a fresh schema, and a log of carts written through the real write path.
Every subject owns one `Cart` and 2 or 3 devices; its events (`Opened`, then items added,
quantities changed, items removed) are sealed with the subject's key by
`EventMapper.seal_event` and appended with `EventStore.append`, `--batch` events per append.
Subjects come back over time: the log is written in rounds, each round appending the next
`--burst` events of every subject, so a subject's events are spread over the whole log (a page
of the rebuild touches many subjects, and a subject is touched by many pages).

Contenders, in one process on one uvloop event loop, taking turns `--repeat` times in rotating
order (each starts after a CHECKPOINT):

- OURS: `Rebuilder(store, mapper, page_size=...).rebuild(SealedViews(SESSION, ...))`, a full
  rebuild into side tables and the switch-over; its `Rebuilt.rate`.
- CEILING: what a rebuild cannot avoid, and nothing more: pages of `SELECT ... FROM events
  WHERE position > $1 ORDER BY position LIMIT n` on one asyncpg connection (the next page read
  while the current one is folded, as the rebuild does), every payload decrypted and decoded
  by `EventMapper.to_envelopes` with the subjects' cached keys, and `SESSION.fold` per subject
  and page into documents kept in memory, under the rebuild's garbage collector setting
  (`continuity.collector.fewer_collections`). It writes nothing.
- RAW READ: the same page reads alone.

`--page-size` is the rebuild's page (default: `continuity.rebuild.PAGE_SIZE`) and CEILING's and
RAW READ's too. `--no-gc` turns Python's cyclic garbage collector off during every timed run, to
show what its full passes cost. The first OURS run is checked against CEILING: every subject's
stored document, opened with its key, must equal the one CEILING folded. `--profile PATH` adds
one more OURS rebuild under cProfile (not counted), writes its stats to PATH and prints the top
functions.

The database: CONTINUITY_BENCH_DATABASE_URL, else CONTINUITY_DATABASE_URL, else the local
server at postgresql://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import statistics
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from time import perf_counter
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg
from eventsourcing.domain import DomainEvent

from aggregates.cart import Cart
from aggregates.metadata import Channel, EventMeta
from bench.appends import (
    _positive,
    about_the_run,
    checkpoint,
    database_url,
    event_loop_factory,
    server_version,
)
from bench.contenders import drop_schema
from bench.results import Figure, ScenarioResult
from continuity.collector import fewer_collections
from continuity.db import close_pool, create_pool, migrate
from continuity.mapper import EventMapper
from continuity.rebuild import PAGE_SIZE, Rebuilder
from continuity.store import EventStore, NewEvent, RecordedEvent
from continuity.subject_views import SealedViews
from privacy.master_key import Keyring, MasterKey
from privacy.vault import KeyVault
from projections.envelope import Envelope
from projections.session import SESSION, SessionView
from projections.view import Folded

CONTENDERS = ("OURS", "CEILING", "RAW READ")
GOAL = 80_000
"""events/s the rebuild should reach on a 2-core machine."""
QUICK_SUBJECTS = 200
QUICK_EVENTS = 20

_COLUMNS = (
    "position, stream_id, version, event_id, subject_id, topic, channel, recorded_at,"
    " key_version, payload, digest"
)
_PAGE_SQL = f"SELECT {_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
_CATALOGUE = [
    (f"SKU-{n:05d}", f"{name} {n:03d}", Decimal(f"{price}.{n % 100:02d}"))
    for n, (name, price) in enumerate(
        [
            ("Merino wool crew sweater", 89),
            ("Organic cotton tee, navy", 25),
            ("Stainless steel bottle", 32),
            ("Noise-cancelling headphones", 249),
            ("Leather card holder, tan", 45),
            ("Ceramic pour-over set", 58),
            ("Trail running shoes", 139),
            ("Linen bed sheet, queen", 120),
        ]
        * 3
    )
]
_DEVICES: list[tuple[Channel, str]] = [
    ("app", "phone"),
    ("web", "laptop"),
    ("app", "tablet"),
    ("web", "work-laptop"),
]


@dataclass(frozen=True, slots=True)
class Run:
    events: int
    seconds: float
    gc_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Bench:
    pool: asyncpg.Pool
    store: EventStore
    vault: KeyVault
    mapper: EventMapper
    sessions: SealedViews[SessionView]
    page_size: int


# -- the log -------------------------------------------------------------------------------------


def subject_events(rng: random.Random, count: int) -> tuple[UUID, list[tuple[EventMeta, Any]]]:
    """One subject's cart history: `count` events, each from one of their 2 or 3 devices."""
    cart = Cart(subject_id=uuid4())
    devices = [
        EventMeta(channel, f"{device}-{rng.randrange(10**6):06d}")
        for channel, device in rng.sample(_DEVICES, rng.choice((2, 3)))
    ]
    while len(cart.pending_events) < count:
        roll = rng.random()
        if cart.lines and roll < 0.15:
            sku = rng.choice(list(cart.lines))
            cart.change_quantity(sku, rng.randint(1, 5))
        elif cart.lines and roll < 0.25:
            cart.remove_item(rng.choice(list(cart.lines)))
        else:
            sku, name, price = rng.choice(_CATALOGUE)
            cart.add_item(sku, name, price, rng.randint(1, 3))
    events = cast(list[DomainEvent], cart.collect_events())
    return cart.subject_id, [(rng.choice(devices), event) for event in events]


async def write_log(bench: Bench, subjects: int, per_subject: int, burst: int, batch: int) -> int:
    """Append every subject's events, `burst` of each subject per round, `batch` per append."""
    rng = random.Random(20261123)
    histories = [subject_events(rng, per_subject) for _ in range(subjects)]
    keys = {s: await bench.vault.key_for_writing(s) for s, _ in histories}
    rows: list[NewEvent] = []
    expected: dict[UUID, int] = {}
    written = 0
    for start in range(0, per_subject, burst):
        for subject_id, history in histories:
            chunk = history[start : start + burst]
            if not chunk:
                continue
            first = chunk[0][1]
            expected.setdefault(first.originator_id, first.originator_version - 1)
            rows += [
                EventMapper.seal_event(keys[subject_id], meta, event, uuid4())
                for meta, event in chunk
            ]
            if len(rows) >= batch:
                await bench.store.append(rows, expected)
                written += len(rows)
                rows, expected = [], {}
    if rows:
        await bench.store.append(rows, expected)
        written += len(rows)
    return written


# -- contenders ----------------------------------------------------------------------------------


async def ours(bench: Bench) -> Run:
    rebuilt = await Rebuilder(bench.store, bench.mapper, page_size=bench.page_size).rebuild(
        bench.sessions
    )
    assert rebuilt is not None
    return Run(rebuilt.events, rebuilt.seconds)


async def ceiling(bench: Bench, documents: dict[UUID, Folded[SessionView]] | None = None) -> Run:
    """Read, decrypt, decode and fold the whole log in memory; `documents` gets the result."""
    folded: dict[UUID, Folded[SessionView]] = {} if documents is None else documents
    folded.clear()
    fold, empty = SESSION.fold, SESSION.empty
    events = 0
    async with bench.pool.acquire() as conn:
        started = perf_counter()
        with fewer_collections():
            page = await conn.fetch(_PAGE_SQL, 0, bench.page_size)
            while page:
                following = asyncio.ensure_future(
                    conn.fetch(_PAGE_SQL, page[-1][0], bench.page_size)
                )
                records = [RecordedEvent(*row) for row in page]
                batches: dict[UUID, list[Envelope]] = {}
                for envelope in await bench.mapper.to_envelopes(records):
                    if not envelope.erased:
                        batches.setdefault(envelope.subject_id, []).append(envelope)
                        events += 1
                for subject, batch in batches.items():
                    state = folded.get(subject)
                    folded[subject] = fold(empty() if state is None else state, batch)
                page = await following
        seconds = perf_counter() - started
    return Run(events, seconds)


async def raw_read(bench: Bench) -> Run:
    events = 0
    async with bench.pool.acquire() as conn:
        started = perf_counter()
        page = await conn.fetch(_PAGE_SQL, 0, bench.page_size)
        while page:
            events += len(page)
            page = await conn.fetch(_PAGE_SQL, page[-1][0], bench.page_size)
        seconds = perf_counter() - started
    return Run(events, seconds)


async def verify(bench: Bench, expected: dict[UUID, Folded[SessionView]]) -> None:
    """Every subject's rebuilt document is the one CEILING folded."""
    async with bench.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM session_views")
        if stored != len(expected):
            raise AssertionError(f"{stored} rows rebuilt, {len(expected)} subjects folded")
        for subject, document in expected.items():
            state = await bench.sessions.load(conn, subject)
            if state != document.state:
                raise AssertionError(f"subject {subject}: the rebuilt view differs")


# -- running -------------------------------------------------------------------------------------


async def setup(dsn: str, schema: str, page_size: int) -> Bench:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, schema)
    finally:
        await conn.close()
    pool = await create_pool(dsn, schema, min_size=2, max_size=8)
    store = EventStore(pool, schema)
    vault = KeyVault(pool, schema, Keyring([MasterKey.generate()]))
    await vault.start()
    mapper = EventMapper(vault)
    sessions = SealedViews(SESSION, vault, store, mapper)
    return Bench(pool, store, vault, mapper, sessions, page_size)


async def teardown(dsn: str, schema: str, bench: Bench | None) -> None:
    if bench is not None:
        await bench.store.aclose()
        await bench.vault.close()
        await close_pool(bench.pool)
    await drop_schema(dsn, schema)


async def profiled(bench: Bench, path: Path) -> str:
    profile = cProfile.Profile()
    profile.enable()
    try:
        await ours(bench)
    finally:
        profile.disable()
    profile.dump_stats(path)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    return out.getvalue()


def render(runs: dict[str, list[Run]]) -> str:
    def best(name: str) -> float:
        return max(run.rate for run in runs[name])

    def median(name: str) -> float:
        return statistics.median(run.rate for run in runs[name])

    lines = [
        "| contender | events/s best | events/s median | best / CEILING best"
        " | median / CEILING median | gc s/run (median) | every run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in runs:
        every = ", ".join(f"{run.rate:,.0f}" for run in runs[name])
        ratios = " | ".join(
            f"{value(name) / value('CEILING'):.2f}x" if "CEILING" in runs else "n/a"
            for value in (best, median)
        )
        collecting = statistics.median(run.gc_seconds for run in runs[name])
        lines.append(
            f"| {name} | {best(name):,.0f} | {median(name):,.0f} | {ratios}"
            f" | {collecting:.2f} | {every} |"
        )
    if "OURS" in runs:
        verdict = "met" if median("OURS") >= GOAL else "MISSED"
        lines += ["", f"goal: OURS >= {GOAL:,} events/s (median): {verdict}"]
    return "\n".join(lines)


async def timed(contender: Callable[[], Awaitable[Run]], no_gc: bool) -> Run:
    """One run, with the time the cyclic garbage collector took during it."""
    spent = 0.0
    began = 0.0

    def clock(phase: str, info: dict[str, int]) -> None:
        nonlocal spent, began
        if phase == "start":
            began = perf_counter()
        else:
            spent += perf_counter() - began

    gc.collect()
    if no_gc:
        gc.disable()
    gc.callbacks.append(clock)
    try:
        run = await contender()
    finally:
        gc.callbacks.remove(clock)
        gc.enable()
    return Run(run.events, run.seconds, spent)


async def take_turns(
    args: argparse.Namespace, dsn: str, bench: Bench, log: Callable[[str], None]
) -> dict[str, list[Run]]:
    started = perf_counter()
    written = await write_log(bench, args.subjects, args.events_per_subject, args.burst, args.batch)
    log(f"wrote {written:,} events in {perf_counter() - started:.1f} s")
    await bench.pool.execute("VACUUM ANALYZE events")
    names: list[str] = args.contenders
    documents: dict[UUID, Folded[SessionView]] = {}
    checked = "OURS" not in names or "CEILING" not in names
    contenders: dict[str, Callable[[], Awaitable[Run]]] = {
        "OURS": lambda: ours(bench),
        # Only until the check: documents kept alive would make every later full pass of the
        # garbage collector, in every contender, scan them too.
        "CEILING": lambda: ceiling(bench, None if checked else documents),
        "RAW READ": lambda: raw_read(bench),
    }
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for turn in range(args.repeat):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            await checkpoint(dsn)
            run = await timed(contenders[name], args.no_gc)
            if run.events != written:
                raise AssertionError(f"{name} went through {run.events} of {written} events")
            runs[name].append(run)
            log(
                f"  {name:<9} {run.rate:>10,.0f} events/s  ({run.seconds:.2f} s, of which"
                f" {run.gc_seconds:.2f} s in the garbage collector)"
            )
            if not checked and documents and runs["OURS"]:
                await verify(bench, documents)
                log("  rebuilt views match the in-memory fold")
                checked = True
                documents.clear()
    if args.profile is not None:
        log(await profiled(bench, args.profile))
    return runs


def _contenders(text: str) -> list[str]:
    names = {"OURS": "OURS", "CEILING": "CEILING", "RAW": "RAW READ", "RAW READ": "RAW READ"}
    chosen = {names.get(part.strip().upper(), "") for part in text.split(",") if part.strip()}
    if not chosen or "" in chosen:
        raise argparse.ArgumentTypeError("choose from OURS, CEILING, RAW")
    return [name for name in CONTENDERS if name in chosen]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rebuild", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--subjects", type=_positive(int), default=2000)
    parser.add_argument("--events-per-subject", type=_positive(int), default=50)
    parser.add_argument("--page-size", type=_positive(int), default=PAGE_SIZE)
    parser.add_argument(
        "--repeat", type=_positive(int), default=3, help="runs per contender, interleaved"
    )
    parser.add_argument(
        "--burst", type=_positive(int), default=5, help="events of one subject per append round"
    )
    parser.add_argument("--batch", type=_positive(int), default=2000, help="events per append")
    parser.add_argument(
        "--contenders",
        type=_contenders,
        default=list(CONTENDERS),
        help="comma-separated, of OURS,CEILING,RAW (RAW READ)",
    )
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="turn the cyclic garbage collector off during every timed run",
    )
    parser.add_argument("--profile", type=Path, metavar="PATH", help="cProfile one more OURS")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK_SUBJECTS} subjects x {QUICK_EVENTS} events, 2 runs each",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.subjects, args.events_per_subject, args.repeat = QUICK_SUBJECTS, QUICK_EVENTS, 2
    return args


def run(
    args: argparse.Namespace, log: Callable[[str], None]
) -> tuple[dict[str, list[Run]], dict[str, Any], str]:
    """Every contender's runs, what the run was about, and its summary line."""
    dsn = database_url()
    schema = f"bench_rebuild_{uuid4().hex[:12]}"
    loop_name, loop_factory = event_loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        postgres = runner.run(server_version(dsn))
        about = about_the_run(
            postgres,
            loop_name,
            **{k: v for k, v in vars(args).items() if k not in ("profile", "json", "quick")},
        )
        summary = (
            f"code {about['code']}; {postgres}\n{os.cpu_count()} cores, Python"
            f" {platform.python_version()}, {loop_name}; {args.subjects:,} subjects x"
            f" {args.events_per_subject} events, {args.burst} per subject per round,"
            f" pages of {args.page_size:,}; {args.repeat} runs per contender"
            f"{'; garbage collector off while timed' if args.no_gc else ''};"
            f" load average before {os.getloadavg()[0]:.2f}"
        )
        log(summary)
        bench = None
        try:
            bench = runner.run(setup(dsn, schema, args.page_size))
            runs = runner.run(take_turns(args, dsn, bench, log))
        finally:
            runner.run(teardown(dsn, schema, bench))
    about["load_average_after"] = os.getloadavg()
    return runs, about, summary


def command_line(args: argparse.Namespace) -> str:
    return (
        f".venv/bin/python -m bench.rebuild --subjects {args.subjects}"
        f" --events-per-subject {args.events_per_subject} --page-size {args.page_size}"
        f" --repeat {args.repeat} --burst {args.burst} --batch {args.batch}"
        + (" --no-gc" if args.no_gc else "")
    )


def result(
    args: argparse.Namespace, runs: dict[str, list[Run]], about: dict[str, Any]
) -> ScenarioResult:
    """OURS's events/s against CEILING and against RAW READ (those that ran)."""
    figures = [
        Figure(
            f"session view rebuild vs {name}",
            "events/s",
            [run.rate for run in runs["OURS"]],
            name,
            [run.rate for run in runs[name]],
        )
        for name in ("CEILING", "RAW READ")
        if name in runs and "OURS" in runs
    ]
    about = {**about, "goal_events_per_s": GOAL}
    return ScenarioResult(
        slug="rebuild",
        title=(
            f"Projection rebuild: the session view from {args.subjects:,} subjects x"
            f" {args.events_per_subject} events (goal {GOAL:,} events/s)"
        ),
        command=command_line(args),
        figures=figures,
        about=about,
    )


def measure(
    argv: Sequence[str], *, progress: Callable[[str], None] | None = None
) -> list[ScenarioResult]:
    """The `make bench` interface: one ScenarioResult, slug "rebuild"."""
    args = parse_args(argv)
    runs, about, _ = run(args, progress or (lambda _text: None))
    return [result(args, runs, about)]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    runs, about, summary = run(args, log)
    print(f"{summary}, after {os.getloadavg()[0]:.2f}\n")
    print(render(runs))
    if args.json is not None:
        about["runs"] = {
            name: [
                {
                    "events": r.events,
                    "seconds": r.seconds,
                    "gc_seconds": r.gc_seconds,
                    "rate": r.rate,
                }
                for r in rs
            ]
            for name, rs in runs.items()
        }
        args.json.write_text(json.dumps(about, indent=2) + "\n")


if __name__ == "__main__":
    main()
