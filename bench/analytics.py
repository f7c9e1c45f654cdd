"""Analytics: the journey analytics projection catching up over a log of consenting customers'
carts, applications and conversations.

    .venv/bin/python -m bench.analytics [--customers 1000] [--rounds 3] [--quick] [--json PATH]

Each of `--customers` customers consents to analytics, then does what `bench.timeline` seeds (a
cart on the web, a loan application in the app, an email conversation handed to an agent,
resolved and rated) and a second cart started on the web and continued in the app, so every
customer has a journey that crosses channels. Measured, round after round, from nothing to the
head of the log (pages of 500):

- ours: the whole `analytics` fold (version 4): the daily counts and the journeys (pairs,
  funnels, conversation endings, with each journey's state read and written per page);
- counts only: the same fold with the journey half left out (what version 3 did), to show
  what following journeys costs;
- baseline: reading and opening the same pages, writing nothing (the floor of any async
  projection here).

In process, on a fresh schema (dropped at the end) of CONTINUITY_BENCH_DATABASE_URL, else
CONTINUITY_DATABASE_URL, else the local server.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from decimal import Decimal
from unittest import mock
from uuid import uuid4

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from bench import catching_up
from bench.appends import about_the_run, server_version
from bench.results import Figure, ScenarioResult
from bench.timeline import seed_customer
from continuity import analytics_journeys, consents
from continuity.repository import IdempotencyKey
from continuity.runtime import Runtime

APP = EventMeta("app", "phone")
WEB = EventMeta("web", "laptop")


parse_args = catching_up.customer_args("bench.analytics", "about 27 events each")


async def seed(runtime: Runtime) -> None:
    """A consenting customer with `bench.timeline`'s journeys, and a cart continued in the app."""
    before = await runtime.pool.fetchval("SELECT coalesce(max(position), 0) FROM events")
    choice = consents.one("analytics", True, "2026-01", "device")
    subject = uuid4()
    await runtime.consents.record(subject, APP, choice, idempotency_key=uuid4())
    await seed_customer(runtime, subject)
    cart = Cart(subject_id=subject, generation=2)  # the timeline's checked out the first
    for meta, sku in ((WEB, "LAMP-3"), (APP, "BULB-1")):
        cart.add_item(sku, sku.title(), Decimal("30.00"), 1)
        key = IdempotencyKey(subject, uuid4())
        await runtime.repository.save(cart, subject, meta, key, b"bench")
    assert await runtime.pool.fetchval("SELECT max(position) FROM events") > before


async def run(args: argparse.Namespace, progress: Callable[[str], None]) -> ScenarioResult:
    async with catching_up.fresh_runtime("bench_analytics") as (runtime, url):
        for n in range(args.customers):
            if n % 100 == 0:
                progress(f"seeding customers: {n:,} of {args.customers:,}")
            await seed(runtime)
        events = await runtime.pool.fetchval("SELECT count(*) FROM events")
        projection = runtime.projections.get("analytics")
        ours, feed = await catching_up.rounds(runtime, projection, events, args.rounds, progress)
        journeys = await runtime.pool.fetchval("SELECT count(*) FROM analytics_journeys")
        assert journeys == 4 * args.customers, journeys  # two carts, the application, the chat
        crossed = await runtime.pool.fetchval("SELECT sum(journeys) FROM analytics_channel_pairs")
        assert crossed == args.customers, crossed  # the second cart, web to app
        counts_only = []
        for n in range(args.rounds):
            progress(f"analytics without journeys, round {n + 1} of {args.rounds}")
            with mock.patch.object(analytics_journeys, "fold", mock.AsyncMock()):
                counts_only.append(await catching_up.catch_up(runtime, projection, events))
        postgres = await server_version(url)
    what = f"analytics catch-up, {events:,} events of {args.customers:,} customers"
    return ScenarioResult(
        slug="analytics",
        title="Analytics: the journey analytics projection catching up over consenting"
        " customers' carts, applications and conversations",
        command=".venv/bin/python -m bench.analytics "
        + shlex.join(["--customers", str(args.customers), "--rounds", str(args.rounds)]),
        figures=[
            Figure(what, "events/s", ours, "reading and opening the same pages", feed),
            Figure(what, "events/s", ours, "the same fold without journeys", counts_only),
        ],
        about=about_the_run(
            postgres, "asyncio", customers=args.customers, rounds=args.rounds, events=events
        ),
    )


measure, main = catching_up.entry_points(parse_args, run)


if __name__ == "__main__":
    main()
