"""Activity: what recording a device's activity costs, by how much the customer has recorded
before, against a cart action.

    .venv/bin/python -m bench.activity [--long 10000] [--actions 500] [--rounds 3] [--quick]
        [--json PATH]

- `ActivityService.record` (what `POST /v1/me/activity` runs) of one product viewed, for a
  customer with 10 activity events and one with `--long`, interleaved over `--rounds`; the goal
  is flat: p50 at the long history within 1.2x of the short one (the aggregate is stood up from
  the session view, never replayed);
- against `CartService.execute` adding an item (`POST /v1/me/cart/items`), the same way.

In process, on a fresh schema (dropped at the end) of CONTINUITY_BENCH_DATABASE_URL, else
CONTINUITY_DATABASE_URL, else the local server.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from uuid import UUID, uuid4

from aggregates.activity import MAX_ITEMS, Viewed
from aggregates.metadata import EventMeta
from bench import catching_up
from bench.appends import about_the_run, server_version
from bench.results import Figure, ScenarioResult
from continuity import carts
from continuity.runtime import Runtime

GOAL_FLAT = 1.2
META = EventMeta("app", "phone")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.activity")
    parser.add_argument("--long", type=int, default=10_000, help="activity events recorded before")
    parser.add_argument("--actions", type=int, default=500, help="actions per customer, round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.long, args.actions, args.rounds = 1_000, 100, 1
    return args


async def seed(runtime: Runtime, events: int) -> UUID:
    """A customer who has viewed `events` products (recorded `MAX_ITEMS` a request)."""
    subject = uuid4()
    for start in range(0, events, MAX_ITEMS):
        stop = min(events, start + MAX_ITEMS)
        items = [Viewed(sku=f"SKU-{n}", name="Mug") for n in range(start, stop)]
        await runtime.activity.record(subject, META, items, idempotency_key=uuid4())
    return subject


async def p50(action: Callable[[int], Awaitable[object]], count: int) -> float:
    latencies = []
    for n in range(count):
        started = time.perf_counter()
        await action(n)
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1000


def viewing(runtime: Runtime, subject: UUID) -> Callable[[int], Awaitable[object]]:
    def action(n: int) -> Awaitable[object]:
        item = Viewed(sku=f"NEW-{n % 40}", name="Teapot", price=Decimal("9.90"), currency="EUR")
        return runtime.activity.record(subject, META, [item], idempotency_key=uuid4())

    return action


def adding(runtime: Runtime, subject: UUID) -> Callable[[int], Awaitable[object]]:
    def action(n: int) -> Awaitable[object]:
        command = carts.add_item(f"NEW-{n % 40}", "Teapot", Decimal("9.90"), 1)
        return runtime.carts.execute(
            subject, META, command, idempotency_key=uuid4(), opens_cart=True
        )

    return action


async def run(args: argparse.Namespace, progress: Callable[[str], None]) -> ScenarioResult:
    async with catching_up.fresh_runtime("bench_activity") as (runtime, url):
        progress(f"seeding customers with 10 and {args.long:,} activity events")
        short, long, shopper = await seed(runtime, 10), await seed(runtime, args.long), uuid4()
        measured: dict[str, list[float]] = {"short": [], "long": [], "cart": []}
        actions = {
            "short": viewing(runtime, short),
            "long": viewing(runtime, long),
            "cart": adding(runtime, shopper),
        }
        for n in range(args.rounds):
            progress(f"actions, round {n + 1} of {args.rounds}")
            order = list(actions) if n % 2 == 0 else list(reversed(actions))
            for name in order:
                await p50(actions[name], args.actions // 10)  # warm up
                measured[name].append(await p50(actions[name], args.actions))
        postgres = await server_version(url)
    return ScenarioResult(
        slug="activity",
        title="Activity: recording a product viewed, by the history before it, against a cart"
        " action",
        command=".venv/bin/python -m bench.activity "
        + shlex.join(
            ["--long", str(args.long), "--actions", str(args.actions), "--rounds", str(args.rounds)]
        ),
        figures=[
            Figure(
                f"a product viewed, p50, after {args.long:,} activity events",
                "ms",
                measured["long"],
                "ours after 10",
                measured["short"],
                higher_is_better=False,
                goal=GOAL_FLAT,
            ),
            Figure(
                "a product viewed, p50, after 10 activity events",
                "ms",
                measured["short"],
                "a cart's add item",
                measured["cart"],
                higher_is_better=False,
            ),
        ],
        about=about_the_run(
            postgres, "asyncio", long=args.long, actions=args.actions, rounds=args.rounds
        ),
    )


measure, main = catching_up.entry_points(parse_args, run)


if __name__ == "__main__":
    main()
