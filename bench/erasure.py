"""Erasure: how long crypto-shredding a subject takes by the length of their history.

    .venv/bin/python -m bench.erasure [--large 100000] [--rounds 3] [--quick] [--json PATH]

Each round seeds three subjects, with 10, 1,000 and `--large` events (conversation turns, in
appends of 500, with the timeline caught up so every projection holds their rows), then erases
each as `continuity erase-subject` does, timing its two halves: `shred_keys` (keys destroyed and
tombstoned, devices and codes gone, identifiers suppressed, every live process's acknowledgement
awaited, the erasure journal's entry written and its file appended and fsync'd: from then on
the data is unreadable everywhere) and the whole with `purge` (events
counted, every projection's rows deleted). The goal for the first is flat (the largest within
1.2x of the smallest) and under a second; the purge deletes a row per timeline entry, so the
whole grows with the history, and is reported beside it.
The baseline is the raw ceiling of a crypto-shred: one transaction deleting a subject's
key row and writing its tombstone, on asyncpg.

In process, on a fresh schema (dropped at the end) of CONTINUITY_BENCH_DATABASE_URL, else
CONTINUITY_DATABASE_URL, else the local server.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable, Sequence
from uuid import UUID, uuid4

from aggregates.conversation import Author, Conversation
from aggregates.metadata import EventMeta
from bench import catching_up
from bench.appends import about_the_run, server_version
from bench.results import Figure, ScenarioResult
from continuity.erasure import purge, shred_keys
from continuity.repository import IdempotencyKey
from continuity.runner import ProjectionRunner
from continuity.runtime import Runtime

GOAL_FLAT = 1.2
META = EventMeta("chat", "phone")
BATCH = 500
"""Turns per seeding append."""
SMALL, MEDIUM = 10, 1_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.erasure")
    parser.add_argument("--large", type=int, default=100_000, help="events of the largest")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.large, args.rounds = 10_000, 1
    return args


async def seed(runtime: Runtime, events: int) -> UUID:
    """A subject whose log holds `events` events: a conversation, customer and bot in turn."""
    subject = uuid4()
    conversation = Conversation.open(subject, "web_chat", uuid4())
    for n in range(events - 1):
        author: Author = "customer" if n % 2 == 0 else "bot"
        conversation.add_turn(author, f"turn {n}: where is my parcel?", "web_chat")
        if len(conversation.pending_events) >= BATCH or n == events - 2:
            key = IdempotencyKey(subject, uuid4())
            await runtime.repository.save(conversation, subject, META, key, b"bench")
    runner = ProjectionRunner(runtime.store, runtime.mapper, runtime.timeline)
    while await runner.step():  # the timeline holds a row per event: erasure deletes them
        pass
    return subject


async def erase_ms(runtime: Runtime, subject: UUID) -> tuple[float, float]:
    """How long until the subject's data is unreadable everywhere (`shred_keys`: keys
    destroyed, every live process acknowledged), and until the erasure is over (`purge`:
    events counted, projection rows deleted), in ms."""
    started = time.perf_counter()
    shredded = await shred_keys(
        runtime.store, runtime.vault, subject, journal_file=runtime.erasure_journal
    )
    unreadable = (time.perf_counter() - started) * 1000
    certificate = await purge(runtime.store, runtime.vault, shredded)
    whole = (time.perf_counter() - started) * 1000
    assert not certificate.already_erased
    assert certificate.projection_rows_deleted > 0
    return unreadable, whole


async def raw_shred_ms(runtime: Runtime) -> float:
    """The ceiling: a fresh subject's key row deleted and a tombstone written, nothing else."""
    subject = uuid4()
    await runtime.vault.key_for_writing(subject)
    started = time.perf_counter()
    async with runtime.pool.acquire() as conn, conn.transaction():
        versions = await conn.fetch(
            "DELETE FROM subject_keys WHERE subject_id = $1 RETURNING key_version", subject
        )
        await conn.execute(
            "INSERT INTO erased_subjects (subject_id, key_versions, events_unreadable)"
            " VALUES ($1, $2, 0)",
            subject,
            [row[0] for row in versions],
        )
    return (time.perf_counter() - started) * 1000


async def run(args: argparse.Namespace, progress: Callable[[str], None]) -> ScenarioResult:
    sizes = (SMALL, MEDIUM, args.large)
    taken: dict[int, list[float]] = {size: [] for size in sizes}
    whole: dict[int, list[float]] = {size: [] for size in sizes}
    raw: list[float] = []
    async with catching_up.fresh_runtime("bench_erase") as (runtime, url):
        for n in range(args.rounds):
            progress(f"round {n + 1} of {args.rounds}: seeding {', '.join(map(str, sizes))}")
            subjects = {size: await seed(runtime, size) for size in sizes}
            order = sizes if n % 2 == 0 else tuple(reversed(sizes))
            for size in order:
                unreadable, done = await erase_ms(runtime, subjects[size])
                taken[size].append(unreadable)
                whole[size].append(done)
            raw.append(await raw_shred_ms(runtime))
        postgres = await server_version(url)
        if runtime.erasure_journal is not None:  # the schema goes at the end: its journal too
            runtime.erasure_journal.unlink(missing_ok=True)
    small = taken[SMALL]
    return ScenarioResult(
        slug="erasure",
        title="Erasure: crypto-shredding a subject, by the length of their history",
        command=".venv/bin/python -m bench.erasure "
        + shlex.join(["--large", str(args.large), "--rounds", str(args.rounds)]),
        figures=[
            Figure(
                f"unreadable everywhere, a subject with {args.large:,} events",
                "ms",
                taken[args.large],
                f"ours with {SMALL} events",
                small,
                higher_is_better=False,
                goal=GOAL_FLAT,
            ),
            Figure(
                f"unreadable everywhere, a subject with {MEDIUM:,} events",
                "ms",
                taken[MEDIUM],
                f"ours with {SMALL} events",
                small,
                higher_is_better=False,
            ),
            Figure(
                f"unreadable everywhere, a subject with {SMALL} events",
                "ms",
                small,
                "a raw key delete and tombstone",
                raw,
                higher_is_better=False,
            ),
            Figure(
                f"whole erasure with the purge, a subject with {args.large:,} events",
                "ms",
                whole[args.large],
                f"ours with {SMALL} events",
                whole[SMALL],
                higher_is_better=False,
            ),
            Figure(
                f"whole erasure with the purge, a subject with {MEDIUM:,} events",
                "ms",
                whole[MEDIUM],
                f"ours with {SMALL} events",
                whole[SMALL],
                higher_is_better=False,
            ),
        ],
        about=about_the_run(postgres, "asyncio", large=args.large, rounds=args.rounds),
    )


measure, main = catching_up.entry_points(parse_args, run)


if __name__ == "__main__":
    main()
