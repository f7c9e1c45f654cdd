"""Timeline: the customer timeline projection catching up over a log of mixed cart, application
and conversation events.

    .venv/bin/python -m bench.timeline [--customers 1000] [--rounds 3] [--quick] [--json PATH]

Each of `--customers` customers has a cart on the web (four changes and a checkout), a loan
application on the app (a start, three drafts, a completed step, a withdrawal) and a
conversation by email handed to an agent (opened, five turns, a handoff, accepted, resolved,
rated): 22 timeline events each, about 22,000 for the default 1,000 customers. Measured, round
after round:

- ours: the `timeline` runner from nothing to the head of the log (pages of 500): read the
  events, open them, seal one row each with its customer's key, write the page: events/s.
- baseline: reading and opening the same pages through the feed, writing nothing (the floor of
  any async projection here).

In process, on a fresh schema (dropped at the end) of CONTINUITY_BENCH_DATABASE_URL, else
CONTINUITY_DATABASE_URL, else the local server.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from aggregates.application import Application
from aggregates.cart import Cart
from aggregates.conversation import Conversation
from aggregates.forms import Answer
from aggregates.metadata import EventMeta
from bench import catching_up
from bench.appends import about_the_run, server_version
from bench.results import Figure, ScenarioResult
from continuity.repository import IdempotencyKey
from continuity.runtime import Runtime

TODAY = date(2026, 11, 23)
WEB = EventMeta("web", "laptop")
APP = EventMeta("app", "phone")
EMAIL = EventMeta("email", "mail client")
AGENT = EventMeta("agent", None, "agent", "agent-ann")
IDENTITY: dict[str, Answer] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "date_of_birth": "1990-12-10",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0000",
    "address_line": "12 St James's Square",
    "postal_code": "SW1Y 4JH",
    "city": "London",
    "country": "IE",
}


parse_args = catching_up.customer_args("bench.timeline", "22 events each")


async def _save(runtime: Runtime, aggregate: Aggregate, subject: UUID, meta: EventMeta) -> None:
    key = IdempotencyKey(subject, uuid4())
    await runtime.repository.save(aggregate, subject, meta, key, b"bench")


async def seed_customer(runtime: Runtime, subject: UUID | None = None) -> None:
    """One customer's cart, application and conversation: 22 timeline events (and the cart's
    opening, which the timeline does not list); a new customer unless `subject` is given."""
    subject = subject or uuid4()
    cart = Cart(subject_id=subject)
    cart.add_item("MUG-1", "Blue mug", Decimal("12.50"), 1)
    cart.add_item("TEA-1", "Green tea", Decimal("4.20"), 2)
    cart.change_quantity("MUG-1", 3)
    cart.remove_item("TEA-1")
    cart.checkout()
    await _save(runtime, cart, subject, WEB)
    form = runtime.applications.catalog.latest("personal-loan")
    assert form is not None
    app = Application(subject_id=subject, form=form, start_key=uuid4())
    app.save_draft("identity", {"first_name": "Ada"})
    app.save_draft("identity", {"city": "Dublin"})
    app.save_draft("identity", {"last_name": "Lovelace"})
    app.complete_step("identity", IDENTITY, TODAY)
    app.withdraw()
    await _save(runtime, app, subject, APP)
    conversation = Conversation(subject_id=subject, medium="email")
    for n in range(3):
        conversation.add_turn("customer", f"Where is my order 1182? ({n})", "email")
    conversation.request_handoff("order not found", requested_by="orderbot")
    await _save(runtime, conversation, subject, EMAIL)
    conversation.accept("agent-ann")
    conversation.add_turn("agent", "Found it: it ships today.", "email", author_id="agent-ann")
    conversation.add_turn("agent", "Anything else?", "email", author_id="agent-ann")
    conversation.resolve("agent", "agent-ann")
    await _save(runtime, conversation, subject, AGENT)
    conversation.rate(5)
    await _save(runtime, conversation, subject, EMAIL)


async def run(args: argparse.Namespace, progress: Callable[[str], None]) -> ScenarioResult:
    async with catching_up.fresh_runtime("bench_timeline") as (runtime, url):
        for n in range(args.customers):
            if n % 100 == 0:
                progress(f"seeding customers: {n:,} of {args.customers:,}")
            await seed_customer(runtime)
        events = await runtime.pool.fetchval(
            "SELECT count(*) FROM events WHERE topic = ANY($1::text[])",
            list(runtime.timeline.topics),
        )
        ours, feed = await catching_up.rounds(
            runtime, runtime.timeline, events, args.rounds, progress, rows=events
        )
        postgres = await server_version(url)
    return ScenarioResult(
        slug="timeline",
        title="Timeline: the customer timeline projection catching up over mixed cart,"
        " application and conversation events",
        command=".venv/bin/python -m bench.timeline "
        + shlex.join(["--customers", str(args.customers), "--rounds", str(args.rounds)]),
        figures=[
            Figure(
                f"timeline catch-up, {events:,} events of {args.customers:,} customers",
                "events/s",
                ours,
                "reading and opening the same pages",
                feed,
            ),
        ],
        about=about_the_run(
            postgres, "asyncio", customers=args.customers, rounds=args.rounds, events=events
        ),
    )


measure, main = catching_up.entry_points(parse_args, run)


if __name__ == "__main__":
    main()
