"""Scale: the append rate and the resume latency as the log grows, and the key vault's memory.

    .venv/bin/python -m bench.scale [--sizes 10000,100000,1000000] [--max-events N]
        [--subjects 100000] [--writers 16] [--seconds 3] [--warmup 0.5] [--rounds 3]
        [--reads 300] [--bound 10000] [--quick] [--json PATH]

In a fresh schema of the bench database (dropped afterwards), the log is bulk-loaded to each
size in turn (10^4, 10^5 and 10^6 events by default) from `--subjects` subjects (10^5), and
measured at each size before it grows:

- Append: `--writers` writers (16), each on a cart of its own with one event per append,
  through the real write path (`bench.contenders` OURS: `EventMapper.seal_event` with the
  subject's key, `EventStore.append`), against RAW: plain INSERTs of rows of the same shape
  into a table with the log's columns and indexes, in the same schema, holding a copy of the
  log's rows (and its own appends). `--seconds` per run after `--warmup`; OURS and RAW take
  turns `--rounds` times.
- Resume: `--reads` random subjects' session views read in-process by `SealedViews.load` (the
  row, the subject's key, decryption and decoding) against a bare one-row
  `SELECT body FROM session_views WHERE subject_id = $1`; p50 per round. The subjects read are
  evicted from the vault's key cache first, so every read of ours fetches and unwraps its key:
  the same work at every size, and the cost of a subject whose key is not cached.

Then the vault's memory (tracemalloc, after a full collection): a `KeyVault` with
`cache_size` = `--subjects` reads every subject's key, against a plain dict of the raw 32-byte
keys; and a vault with `cache_size` = `--bound` (default: the vault's own default, 10,000)
reads them all too: its memory stays bounded. tracemalloc sees Python's allocations only (not
OpenSSL's memory behind each key's AESGCM object); the resident-set growth of the process
while a vault caches every key (no tracemalloc then) is reported beside it, roughly.
The writers' appends count towards the next size: a size is what the log holds when measured.

The bulk load writes real sealed events, so the views and resume work on them. Every subject's
key is created up front, wrapped by the master key exactly as `KeyVault` wraps it, and COPY'd
into `subject_keys`. Each subject owns one cart; the log is written round-robin over the
subjects (a subject's events are spread over the whole log): its cart's next event (`Opened`,
then items added, quantities changed, items removed), sealed by `EventMapper.seal_event`. Each
growth step is one transaction: its xid is every row's `tx_id`, its positions are taken from
`events_position_seq` in that transaction, and the rows are COPY'd into `events`; once it has
committed, its rows are settled (below `pg_snapshot_xmin`) as the log's readers require. The
session view is then rebuilt by `Rebuilder.rebuild(SealedViews(SESSION, ...))`, as
`continuity projections rebuild` does, but holding every document until the end (`held`) and
with every key cached: with the defaults (20,000 documents, 10,000 keys) a log that interleaves
10^5 subjects rebuilds much slower, each page reading back, reopening and rewriting the
documents of the subjects it touches (3,900 events/s at 10^6 in one run on 2 busy cores). The
setup's rebuild rate at each size is in `about`.

`--quick`: sizes 10^3 and 10^4 from 10^3 subjects, a bound of 100, one short round (a smoke
run).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import secrets
import statistics
import sys
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg
from eventsourcing.domain import DomainEvent

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from bench.appends import (
    _positive,
    about_the_run,
    checkpoint,
    database_url,
    event_loop_factory,
    server_version,
)
from bench.contenders import (
    _RAW_TABLE,
    ITEM_NAME,
    META,
    UNIT_PRICE,
    _raw_writer,
    drop_schema,
    sample_row,
)
from bench.rebuild import _CATALOGUE, _DEVICES
from bench.results import Figure, ScenarioResult, Series, to_json
from bench.table import render_rows
from bench.timing import AsyncOp, drive_async, percentile
from continuity.db import close_pool, create_pool, migrate
from continuity.mapper import EventMapper
from continuity.rebuild import Rebuilder
from continuity.store import EventStore
from continuity.subject_views import SealedViews
from privacy.cipher import SubjectKey
from privacy.master_key import KEY_BYTES, Keyring, MasterKey
from privacy.vault import KeyVault, _wrap_context
from projections.session import SESSION, SessionView

Progress = Callable[[str], None]

SIZES = (10**4, 10**5, 10**6)
SUBJECTS = 10**5
QUICK_SIZES = (10**3, 10**4)
QUICK_SUBJECTS = 10**3
DEFAULT_CACHE = 10_000
"""`KeyVault`'s default `cache_size`: the bound `--bound` shows holding (100 with `--quick`)."""
TARGET_VS_RAW = 0.60
BOUND_SLACK = 1.5
"""A bounded vault, having read every key, holds at most this many times its share (bound /
keys) of the memory of one that caches them all: at most 0.15x for 10,000 of 100,000."""
_CHUNK = 20_000
_SKUS = 50
_HELD_MARGIN = 10_000
"""Documents of the writers' subjects, on top of the bulk-loaded ones."""
_EVENT_COLUMNS = [
    "position",
    "tx_id",
    "stream_id",
    "version",
    "event_id",
    "subject_id",
    "topic",
    "channel",
    "recorded_at",
    "key_version",
    "digest",
    "payload",
]
_COPY_TO_RAW = (
    "INSERT INTO raw_events (stream_id, version, event_id, subject_id, topic, channel,"
    " recorded_at, key_version, digest, payload)"
    " SELECT stream_id, version, event_id, subject_id, topic, channel, recorded_at, key_version,"
    " digest, payload FROM events WHERE position > $1"
)


@dataclass
class Subject:
    key: SubjectKey
    cart: Cart
    devices: list[EventMeta]


@dataclass
class Log:
    """The schema under test, the subjects, and how far the bulk load has gone."""

    schema: str
    pool: asyncpg.Pool
    store: EventStore
    keyring: Keyring
    vault: KeyVault
    mapper: EventMapper
    sessions: SealedViews[SessionView]
    subjects: list[Subject]
    rng: random.Random
    loaded: int = 0
    """Events written by the bulk load (the writers' appends come on top)."""
    copied_to_raw: int = 0
    """The last position of the log copied into RAW's table."""
    about: dict[str, Any] = field(default_factory=dict)


# -- the bulk load -------------------------------------------------------------------------------


async def create_keys(log: Log, count: int, progress: Progress) -> None:
    """`count` subjects, their keys wrapped as `KeyVault` wraps them, COPY'd in chunks."""
    for start in range(0, count, _CHUNK):
        records = []
        for _ in range(min(_CHUNK, count - start)):
            subject_id = uuid4()
            data_key = secrets.token_bytes(KEY_BYTES)
            kek_id, wrapped = log.keyring.wrap(data_key, _wrap_context(subject_id, 1))
            records.append((subject_id, 1, kek_id, wrapped))
            devices = [
                EventMeta(channel, f"{device}-{log.rng.randrange(10**6):06d}")
                for channel, device in log.rng.sample(_DEVICES, 2)
            ]
            key = SubjectKey.from_bytes(subject_id, 1, data_key)
            log.subjects.append(Subject(key, Cart(subject_id=subject_id), devices))
        await log.pool.copy_records_to_table(
            "subject_keys",
            records=records,
            columns=["subject_id", "key_version", "kek_id", "wrapped_key"],
            schema_name=log.schema,
        )
        progress(f"created {start + len(records):,} of {count:,} subject keys")


def next_event(subject: Subject, rng: random.Random) -> DomainEvent:
    """The subject's cart's next event: `Opened` first, then a mix of cart actions."""
    cart = subject.cart
    if not cart.pending_events:
        roll = rng.random()
        if cart.lines and roll < 0.15:
            cart.change_quantity(rng.choice(list(cart.lines)), rng.randint(1, 5))
        elif cart.lines and roll < 0.25:
            cart.remove_item(rng.choice(list(cart.lines)))
        else:
            sku, name, price = rng.choice(_CATALOGUE)
            cart.add_item(sku, name, price, rng.randint(1, 3))
    events = cast(list[DomainEvent], cart.collect_events())
    assert len(events) == 1
    return events[0]


async def grow(log: Log, count: int, progress: Progress) -> object:
    """Append `count` sealed events in one transaction, COPY'd with its xid and positions;
    returns that xid."""
    subjects, rng = log.subjects, log.rng
    async with log.pool.acquire() as conn, conn.transaction():
        tx_id = await conn.fetchval("SELECT pg_current_xact_id()")
        first: int = await conn.fetchval("SELECT nextval('events_position_seq')")
        await conn.execute("SELECT setval('events_position_seq', $1)", first + count - 1)
        for start in range(0, count, _CHUNK):
            records = []
            for offset in range(start, min(start + _CHUNK, count)):
                subject = subjects[(log.loaded + offset) % len(subjects)]
                event = next_event(subject, rng)
                row = EventMapper.seal_event(
                    subject.key, rng.choice(subject.devices), event, uuid4()
                )
                records.append(
                    (
                        first + offset,
                        tx_id,
                        row.stream_id,
                        row.version,
                        row.event_id,
                        row.subject_id,
                        row.topic,
                        row.channel,
                        row.recorded_at,
                        row.key_version,
                        row.digest,
                        row.payload,
                    )
                )
            await conn.copy_records_to_table(
                "events", records=records, columns=_EVENT_COLUMNS, schema_name=log.schema
            )
            progress(f"sealed and copied {start + len(records):,} of {count:,} events")
    log.loaded += count
    return tx_id


async def settled(log: Log, tx_id: object, progress: Progress, patience: float = 120.0) -> None:
    """Wait until no transaction older than `tx_id` is in flight anywhere in the cluster: the
    rebuild folds only settled rows."""
    deadline = perf_counter() + patience
    while not await log.pool.fetchval(
        "SELECT $1::xid8 < pg_snapshot_xmin(pg_current_snapshot())", tx_id
    ):
        if perf_counter() > deadline:
            raise TimeoutError(f"the bulk load is still not settled after {patience:g} s")
        progress("waiting for older transactions in the cluster to end")
        await asyncio.sleep(0.2)


async def load_to(log: Log, size: int, progress: Progress) -> int:
    """Grow the log to `size` events, mirror it into RAW's table, rebuild the session view;
    returns the events in the log."""
    present: int = await log.pool.fetchval("SELECT count(*) FROM events")
    if size > present:
        started = perf_counter()
        await settled(log, await grow(log, size - present, progress), progress)
        log.about.setdefault("load_seconds", {})[str(size)] = perf_counter() - started
    progress("VACUUM ANALYZE and RAW's copy of the log")
    await log.pool.execute("VACUUM ANALYZE events")
    last: int = await log.pool.fetchval("SELECT coalesce(max(position), 0) FROM events")
    await log.pool.execute(_COPY_TO_RAW, log.copied_to_raw)
    log.copied_to_raw = last
    await log.pool.execute("VACUUM ANALYZE raw_events")

    def rebuilding(events: int, _position: int) -> None:
        progress(f"rebuilding the session view: {events:,} events folded")

    # Every document held until the end: with the default (20,000) and the log written
    # round-robin over more subjects than that, each page reads back, reopens and rewrites the
    # documents of the subjects it touches, and the setup takes minutes longer at 10^6.
    held = len(log.subjects) + _HELD_MARGIN
    everyone = SealedViews(SESSION, log.vault, log.store, log.mapper, held=held)
    rebuilt = await Rebuilder(log.store, log.mapper).rebuild(everyone, rebuilding)
    assert rebuilt is not None
    log.about.setdefault("setup_rebuild_events_per_s", {})[str(size)] = rebuilt.rate
    log.about["setup_rebuild_held"] = held
    counted: int = await log.pool.fetchval("SELECT count(*) FROM events")
    return counted


# -- measurements --------------------------------------------------------------------------------


async def our_writer(store: EventStore, vault: KeyVault) -> AsyncOp:
    """One writer of the real write path, as `bench.contenders` OURS with one event per append,
    on a cart that stays within its 100 different items (it cycles through a few SKUs)."""
    cart = Cart(subject_id=uuid4())
    key = await vault.key_for_writing(cart.subject_id)  # creates the subject's key
    pending = cast(list[DomainEvent], cart.collect_events())
    opened = [EventMapper.seal_event(key, META, e, uuid4()) for e in pending]
    await store.append(opened, {cart.id: 0})
    added = 0

    async def append() -> int:
        nonlocal added
        cart.add_item(f"SKU-{added % _SKUS:02d}", ITEM_NAME, UNIT_PRICE, 1)
        added += 1
        [event] = cart.collect_events()
        key = await vault.key_for_writing(cart.subject_id)
        domain_event = cast(DomainEvent, event)
        row = EventMapper.seal_event(key, META, domain_event, uuid4())
        await store.append([row], {cart.id: domain_event.originator_version - 1})
        return 1

    return append


async def append_rates(
    log: Log, dsn: str, args: argparse.Namespace, progress: Progress, size: int
) -> tuple[list[float], list[float]]:
    """OURS's and RAW's events/s, `args.rounds` runs each, taking turns."""
    like = sample_row()

    async def ours() -> list[AsyncOp]:
        return [await our_writer(log.store, log.vault) for _ in range(args.writers)]

    async def raw() -> list[AsyncOp]:
        return [_raw_writer(log.pool, like, 1) for _ in range(args.writers)]

    contenders: dict[str, Callable[[], Awaitable[list[AsyncOp]]]] = {"OURS": ours, "RAW": raw}
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for turn in range(args.rounds):
        for name in names[turn % 2 :] + names[: turn % 2]:
            progress(f"log of {size:,}: append, {name}, round {turn + 1} of {args.rounds}")
            ops = await contenders[name]()
            await checkpoint(dsn)
            measured = await drive_async(ops, args.warmup, args.seconds)
            rates[name].append(measured.events_per_s)
    return rates["OURS"], rates["RAW"]


async def resume_latencies(
    log: Log, args: argparse.Namespace, progress: Progress, size: int
) -> tuple[list[float], list[float]]:
    """p50 in ms of `SealedViews.load` and of the bare one-row read, per round."""
    with_views = log.subjects[: min(log.loaded, len(log.subjects))]
    ours: list[float] = []
    bare: list[float] = []
    async with log.pool.acquire() as conn:
        for turn in range(args.rounds):
            progress(f"log of {size:,}: resume, round {turn + 1} of {args.rounds}")
            chosen = [s.key.subject_id for s in log.rng.sample(with_views, args.reads)]
            for subject_id in chosen:
                log.vault.evict(subject_id)

            async def load(subject_id: UUID) -> None:
                if await log.sessions.load(conn, subject_id) is None:
                    raise AssertionError(f"subject {subject_id} has no session view")

            async def read(subject_id: UUID) -> None:
                await conn.fetchval(
                    "SELECT body FROM session_views WHERE subject_id = $1", subject_id
                )

            timed: list[tuple[list[float], Callable[[UUID], Awaitable[None]]]] = [
                (ours, load),
                (bare, read),
            ]
            for into, reader in timed[turn % 2 :] + timed[: turn % 2]:
                latencies = []
                for subject_id in chosen:
                    started = perf_counter()
                    await reader(subject_id)
                    latencies.append(perf_counter() - started)
                into.append(percentile(sorted(latencies), 0.5) * 1000)
    return ours, bare


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _traced(fill: Callable[[], Awaitable[object]]) -> tuple[int, object]:
    """Python memory (tracemalloc) held by what `fill` returns, and that."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = await fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, kept


async def _resident(fill: Callable[[], Awaitable[object]]) -> tuple[int, object]:
    """Resident-set growth (without tracemalloc, whose own records would count) while `fill`
    builds what it returns, native memory included; rough: freed memory gets reused."""
    gc.collect()
    before = _rss_bytes()
    kept = await fill()
    gc.collect()
    return _rss_bytes() - before, kept


async def vault_memory(
    log: Log, args: argparse.Namespace, progress: Progress
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Bytes held per round: a vault caching every key, a dict of the raw keys, and a vault
    with the default bound after reading every key (and the resident-set growth of the first)."""
    pairs = [(s.key.subject_id, 1) for s in log.subjects]
    batch = 1000

    async def vault_reading_all(cache_size: int) -> KeyVault:
        vault = KeyVault(log.pool, log.schema, log.keyring, cache_size)
        await vault.start()
        for start in range(0, len(pairs), batch):
            await vault.keys_for_reading(pairs[start : start + batch])
        return vault

    async def raw_keys() -> dict[UUID, bytes]:
        rows = await log.pool.fetch("SELECT subject_id, kek_id, wrapped_key FROM subject_keys")
        return {
            row[0]: log.keyring.unwrap(row[1], row[2], _wrap_context(row[0], 1)) for row in rows
        }

    cached: list[float] = []
    plain: list[float] = []
    bounded: list[float] = []
    rss: list[float] = []
    for turn in range(args.rounds):
        progress(f"vault memory, {len(pairs):,} keys, round {turn + 1} of {args.rounds}")
        grown, vault = await _resident(lambda: vault_reading_all(len(pairs)))
        assert isinstance(vault, KeyVault)
        await vault.close()
        del vault
        rss.append(grown)
        held, vault = await _traced(lambda: vault_reading_all(len(pairs)))
        assert isinstance(vault, KeyVault)
        if len(vault._cache) != len(pairs):
            raise AssertionError(f"{len(vault._cache)} keys cached of {len(pairs)}")
        await vault.close()
        del vault
        cached.append(held)
        held, keys = await _traced(raw_keys)
        del keys
        plain.append(held)
        held, vault = await _traced(lambda: vault_reading_all(args.bound))
        assert isinstance(vault, KeyVault)
        if len(vault._cache) > args.bound:
            raise AssertionError(f"{len(vault._cache)} keys cached, bound {args.bound}")
        await vault.close()
        del vault
        bounded.append(held)
    return cached, plain, bounded, rss


# -- running -------------------------------------------------------------------------------------


async def open_log(dsn: str, schema: str, writers: int, subjects: int) -> Log:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, schema)
        await conn.execute(f'SET search_path TO "{schema}";{_RAW_TABLE}')
    finally:
        await conn.close()
    size = writers + 6  # the writers, two vaults' listeners, the store's notifier, spares
    pool = await create_pool(dsn, schema, min_size=size, max_size=size)
    store = EventStore(pool, schema)
    keyring = Keyring([MasterKey.generate()])
    # Every key cached, as the setup's rebuild reads them all (resume evicts the keys it reads).
    vault = KeyVault(pool, schema, keyring, cache_size=subjects + _HELD_MARGIN)
    await vault.start()
    mapper = EventMapper(vault)
    sessions = SealedViews(SESSION, vault, store, mapper)
    return Log(schema, pool, store, keyring, vault, mapper, sessions, [], random.Random(20261123))


async def close_log(dsn: str, log: Log | None, schema: str) -> None:
    if log is not None:
        await log.store.aclose()
        await log.vault.close()
        await close_pool(log.pool)
    await drop_schema(dsn, schema)


def _prefixed(progress: Progress, prefix: str) -> Progress:
    return lambda text: progress(prefix + text)


def _mib(values: Sequence[float]) -> list[float]:
    return [value / 2**20 for value in values]


async def run(args: argparse.Namespace, progress: Progress) -> ScenarioResult:
    dsn = database_url()
    schema = f"bench_scale_{uuid4().hex[:10]}"
    loop_name, _ = event_loop_factory()
    about = about_the_run(
        await server_version(dsn),
        loop_name,
        **{k: v for k, v in vars(args).items() if k not in ("json", "quick")},
    )
    figures: list[Figure] = []
    appended: dict[int, tuple[list[float], list[float]]] = {}
    resumed: dict[int, tuple[list[float], list[float]]] = {}
    log = None
    try:
        log = await open_log(dsn, schema, args.writers, args.subjects)
        log.about = about
        await create_keys(log, args.subjects, progress)
        about["events_at_measurement"] = {}
        for size in args.sizes:
            counted = await load_to(log, size, _prefixed(progress, f"log to {size:,}: "))
            about["events_at_measurement"][str(size)] = counted
            appended[size] = await append_rates(log, dsn, args, progress, size)
            resumed[size] = await resume_latencies(log, args, progress, size)
        cached, plain, bounded, rss = await vault_memory(log, args, progress)
    finally:
        await close_log(dsn, log, schema)
    for size in args.sizes:
        ours, raw = appended[size]
        figures.append(
            Figure(
                f"store append, {args.writers} writers x 1 event, log of {size:,}",
                "events/s",
                ours,
                "RAW",
                raw,
                goal=TARGET_VS_RAW,
            )
        )
    for size in args.sizes:
        ours, bare = resumed[size]
        figures.append(
            Figure(
                f"resume p50 (SealedViews.load, key not cached), log of {size:,}",
                "ms",
                ours,
                "bare one-row read",
                bare,
                higher_is_better=False,
            )
        )
    keys = args.subjects
    figures += [
        Figure(
            f"vault memory, {keys:,} cached keys",
            "MiB",
            _mib(cached),
            "dict of raw keys",
            _mib(plain),
            higher_is_better=False,
        ),
        Figure(f"vault memory per cached key ({keys:,} cached)", "bytes", cached_per(cached, keys)),
        Figure(
            f"vault resident-set growth, {keys:,} cached keys (with OpenSSL's, rough)",
            "MiB",
            _mib(rss),
        ),
        Figure(
            f"vault memory after reading {keys:,} keys, cache_size {args.bound:,}"
            + (" (the default)" if args.bound == DEFAULT_CACHE else ""),
            "MiB",
            _mib(bounded),
            f"cache_size {keys:,}",
            _mib(cached),
            higher_is_better=False,
            goal=BOUND_SLACK * min(1.0, args.bound / keys),
        ),
    ]
    series = [
        Series(
            "OURS append (events/s)",
            [(float(size), statistics.median(appended[size][0])) for size in args.sizes],
        ),
        Series(
            "RAW append (events/s)",
            [(float(size), statistics.median(appended[size][1])) for size in args.sizes],
        ),
        Series(
            "OURS resume p50 (ms)",
            [(float(size), statistics.median(resumed[size][0])) for size in args.sizes],
        ),
        Series(
            "bare one-row read p50 (ms)",
            [(float(size), statistics.median(resumed[size][1])) for size in args.sizes],
        ),
    ]
    return ScenarioResult(
        slug="scale",
        title=(f"Scale: append and resume by log size ({args.subjects:,} subjects), vault memory"),
        command=command_line(args),
        figures=figures,
        series=series,
        x_label="events in the log",
        y_label="",
        about=about,
    )


def cached_per(held: Sequence[float], keys: int) -> list[float]:
    return [value / keys for value in held]


def command_line(args: argparse.Namespace) -> str:
    sizes = ",".join(str(size) for size in args.sizes)
    return (
        f".venv/bin/python -m bench.scale --sizes {sizes} --subjects {args.subjects}"
        f" --writers {args.writers} --seconds {args.seconds:g} --warmup {args.warmup:g}"
        f" --rounds {args.rounds} --reads {args.reads} --bound {args.bound}"
    )


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated numbers of events") from None
    if not sizes or sizes[0] <= 0:
        raise argparse.ArgumentTypeError("sizes must be more than 0")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--sizes", type=_sizes, help="log sizes, default 10^4,10^5,10^6")
    parser.add_argument(
        "--max-events", type=_positive(int), help="leave out the sizes above this one"
    )
    parser.add_argument("--subjects", type=_positive(int), help="default 100,000")
    parser.add_argument("--writers", type=_positive(int), default=16)
    parser.add_argument("--seconds", type=_positive(float), help="per append run, default 3")
    parser.add_argument("--warmup", type=_positive(float), help="before each, default 0.5")
    parser.add_argument("--rounds", type=_positive(int), help="turns per contender, default 3")
    parser.add_argument("--reads", type=_positive(int), help="resumes per round, default 300")
    parser.add_argument("--bound", type=_positive(int), help="a vault's cache_size to check")
    parser.add_argument("--quick", action="store_true", help="a small, short smoke run")
    parser.add_argument("--json", help="also write the result as JSON to this path")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "sizes": list(QUICK_SIZES if quick else SIZES),
        "subjects": QUICK_SUBJECTS if quick else SUBJECTS,
        "seconds": 0.5 if quick else 3.0,
        "warmup": 0.2 if quick else 0.5,
        "rounds": 1 if quick else 3,
        "reads": 50 if quick else 300,
        "bound": 100 if quick else DEFAULT_CACHE,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.max_events is not None:
        args.sizes = [size for size in args.sizes if size <= args.max_events] or [args.max_events]
    args.reads = min(args.reads, args.subjects, args.sizes[0])
    return args


def measure(argv: Sequence[str], *, progress: Progress | None = None) -> list[ScenarioResult]:
    args = parse_args(argv)
    _, loop_factory = event_loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(run(args, progress or (lambda _text: None)))
    if args.json:
        with open(args.json, "wb") as out:
            out.write(to_json(result))
    return [result]


def main(argv: Sequence[str] | None = None) -> None:
    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    for result in measure(sys.argv[1:] if argv is None else argv, progress=log):
        print(render_rows([result]))


if __name__ == "__main__":
    main()
