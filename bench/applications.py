"""Applications: resume latency by history length across a cart and an application, and the
agents' queue projection catching up.

    .venv/bin/python -m bench.applications [--long 10000] [--reads 2000] [--rounds 3]
        [--queue-applications 2000] [--quick] [--json PATH]

- resume: `CartService.session` (what `GET /v1/me/session` reads: the customer's sealed
  session row, opened) for a customer whose history is 10 events (half a cart, half an
  application) and one whose history is `--long` events (the same split), interleaved over
  `--rounds`; the goal is flat: p50 at the long history within 1.2x of the short one.
- queue: the `application_queue` runner catching up from nothing over the events of
  `--queue-applications` applications (five events each), in events/s, against reading and
  opening the same pages without applying them (the feed the runner cannot go below).

In process, on a fresh schema (dropped at the end) of CONTINUITY_BENCH_DATABASE_URL, else
CONTINUITY_DATABASE_URL, else the local server.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from uuid import UUID, uuid4

from aggregates.application import Application
from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from bench import catching_up
from bench.appends import about_the_run, server_version
from bench.results import Figure, ScenarioResult
from continuity.application_queue import ApplicationQueue
from continuity.repository import IdempotencyKey
from continuity.runtime import Runtime

GOAL_FLAT = 1.2
META = EventMeta("app", "phone")
TODAY = date(2026, 11, 23)
BATCH = 500
"""Events per seeding append."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.applications")
    parser.add_argument("--long", type=int, default=10_000, help="events of the long history")
    parser.add_argument("--reads", type=int, default=2_000, help="resumes per history and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queue-applications", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.long, args.reads, args.rounds, args.queue_applications = 1_000, 200, 1, 200
    return args


async def seed_customer(runtime: Runtime, events: int) -> UUID:
    """A customer with a cart and a loan application of `events` events in all, half each."""
    subject = uuid4()
    cart = Cart(subject_id=subject)
    for n in range(events // 2):
        if n % 2 == 0:
            cart.add_item(f"SKU-{n % 40}", "An item", Decimal("2.50"), 1)
        else:
            cart.change_quantity(f"SKU-{(n - 1) % 40}", n % 9 + 1)
        if len(cart.pending_events) >= BATCH or n == events // 2 - 1:
            await _save(runtime, cart, subject)
    form = runtime.applications.catalog.latest("personal-loan")
    assert form is not None
    app = Application(subject_id=subject, form=form, start_key=uuid4())
    for n in range(events - events // 2 - 1):
        app.save_draft("identity", {"first_name": f"Ada {n}", "city": "Dublin"})
        if len(app.pending_events) >= BATCH:
            await _save(runtime, app, subject)
    await _save(runtime, app, subject)
    return subject


async def _save(runtime: Runtime, aggregate: Cart | Application, subject: UUID) -> None:
    key = IdempotencyKey(subject, uuid4())
    await runtime.repository.save(aggregate, subject, META, key, b"bench")


async def resume_p50(runtime: Runtime, subject: UUID, reads: int) -> float:
    latencies = []
    for _ in range(reads):
        started = time.perf_counter()
        await runtime.carts.session(subject)
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1000


async def seed_queue(runtime: Runtime, applications: int) -> int:
    """`applications` applications of five events each; returns the events written."""
    form = runtime.applications.catalog.latest("personal-loan")
    assert form is not None
    for _ in range(applications):
        subject = uuid4()
        app = Application(subject_id=subject, form=form, start_key=uuid4())
        app.save_draft("identity", {"first_name": "Ada"})
        app.save_draft("identity", {"city": "Dublin"})
        app.save_draft("employment", {"status": "employed"})
        app.withdraw()
        await _save(runtime, app, subject)
    return applications * 5


async def run(args: argparse.Namespace, progress: Callable[[str], None]) -> ScenarioResult:
    async with catching_up.fresh_runtime("bench_apps") as (runtime, url):
        progress(f"seeding a customer of 10 events and one of {args.long:,}")
        short = await seed_customer(runtime, 10)
        long = await seed_customer(runtime, args.long)
        short_rounds: list[float] = []
        long_rounds: list[float] = []
        for n in range(args.rounds):
            progress(f"resume, round {n + 1} of {args.rounds}")
            pair = [(short, short_rounds), (long, long_rounds)]
            for subject, rounds in pair if n % 2 == 0 else reversed(pair):
                await resume_p50(runtime, subject, args.reads // 10)  # warm the key cache
                rounds.append(await resume_p50(runtime, subject, args.reads))
        progress(f"seeding {args.queue_applications:,} applications for the queue")
        await seed_queue(runtime, args.queue_applications)
        events = await runtime.pool.fetchval(
            "SELECT count(*) FROM events WHERE topic = ANY($1::text[])",
            list(ApplicationQueue().topics),
        )
        ours, feed = await catching_up.rounds(
            runtime, ApplicationQueue(), events, args.rounds, progress
        )
        postgres = await server_version(url)
    return ScenarioResult(
        slug="applications",
        title="Applications: resume across a cart and an application by history length; the"
        " agents' queue catching up",
        command=".venv/bin/python -m bench.applications "
        + shlex.join(
            [
                *("--long", str(args.long), "--reads", str(args.reads)),
                *("--rounds", str(args.rounds)),
                *("--queue-applications", str(args.queue_applications)),
            ]
        ),
        figures=[
            Figure(
                f"resume p50, a history of {args.long:,} events (cart and application)",
                "ms",
                long_rounds,
                "ours at 10 events",
                short_rounds,
                higher_is_better=False,
                goal=GOAL_FLAT,
            ),
            Figure("resume p50, a history of 10 events", "ms", short_rounds),
            Figure(
                "application queue catch-up",
                "events/s",
                ours,
                "reading and opening the same pages",
                feed,
            ),
        ],
        about=about_the_run(
            postgres,
            "asyncio",
            long=args.long,
            reads=args.reads,
            rounds=args.rounds,
            queue_applications=args.queue_applications,
        ),
    )


measure, main = catching_up.entry_points(parse_args, run)


if __name__ == "__main__":
    main()
