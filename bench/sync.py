"""Offline sync: a batch of 100 mixed actions in one request, against the same actions one by one.

    .venv/bin/python -m bench.sync [--batches 40] [--rounds 3] [--quick] [--json PATH]

Each batch is a fresh customer's queue of 100 actions: 20 cart adds and 20 quantity changes,
30 drafts of a loan application and 30 chat turns (the application and the conversation
started beforehand, untimed). Ours is `SyncService.apply` (what `POST /v1/me/sync` runs: the
duplicates in one query, each target loaded once, one append); the baseline, measured in the
same run on another fresh customer each time, sends the same 100 actions as 100 calls of the
services the single routes run (`CartService.execute`, `ApplicationService.act`,
`ConversationService.act`: one append each). Rounds interleave the two; each round reports
actions/s over its batches and the p50 and p99 of a batch (100 actions either way).

In process, on a fresh schema (dropped at the end) of CONTINUITY_BENCH_DATABASE_URL, else
CONTINUITY_DATABASE_URL, else the local server.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4

from aggregates.metadata import EventMeta
from bench import catching_up
from bench.appends import about_the_run, server_version
from bench.results import Figure, ScenarioResult
from continuity import applications, carts, conversations
from continuity.conversations import Turn
from continuity.runtime import Runtime
from continuity.sync import Applied, SyncAction

META = EventMeta("app", "phone")
ACTIONS = 100
GOAL_FASTER = 3.0
"""A batch should carry its actions at least 3x as fast as the same actions one by one."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sync")
    parser.add_argument("--batches", type=int, default=40, help="batches per round, each way")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.rounds = 5, 1
    return args


async def customer(runtime: Runtime) -> tuple[UUID, UUID, UUID]:
    """A fresh customer with a loan application and a conversation (at version 1 each)."""
    subject = uuid4()
    app = await runtime.applications.start(subject, META, "personal-loan", idempotency_key=uuid4())
    chat = await runtime.conversations.open(subject, META, "app_chat", idempotency_key=uuid4())
    return subject, app.id, chat.id


def queue(app: UUID, chat: UUID) -> list[SyncAction]:
    """100 actions as a phone queues them offline, in the order the customer did them."""
    now = datetime.now(UTC)
    actions: list[SyncAction] = []

    def queued(target: str, target_id: UUID | None, base: int, operation: object) -> None:
        actions.append(SyncAction(uuid4(), target, target_id, base, now, operation))  # type: ignore[arg-type]

    for n in range(20):
        queued("cart", None, 0, carts.add_item(f"SKU-{n}", "An item", Decimal("2.50"), 1))
        queued("cart", None, 0, carts.change_quantity(f"SKU-{n}", n % 5 + 2))
    for n in range(30):
        draft = applications.save_draft("identity", {"first_name": f"Ada {n}", "city": "Cork"})
        queued("application", app, 1, draft)
        queued(
            "conversation", chat, 1, conversations.say("customer", None, Turn(f"q {n}", "app_chat"))
        )
    return actions


async def batched(runtime: Runtime) -> float:
    """One batch through the sync service: its seconds."""
    subject, app, chat = await customer(runtime)
    actions = queue(app, chat)
    started = time.perf_counter()
    outcomes = await runtime.sync.apply(subject, META, actions)
    seconds = time.perf_counter() - started
    assert all(isinstance(o, Applied) for o in outcomes), outcomes
    return seconds


async def one_by_one(runtime: Runtime) -> float:
    """The same 100 actions as 100 single service calls: their seconds."""
    subject, app, chat = await customer(runtime)
    actions = queue(app, chat)
    started = time.perf_counter()
    for action in actions:
        operation = action.operation
        if isinstance(operation, carts.Command):
            opens = operation.method == "add_item"
            await runtime.carts.execute(
                subject, META, operation, idempotency_key=action.event_id, opens_cart=opens
            )
        elif isinstance(operation, applications.Action):
            assert action.target_id is not None
            await runtime.applications.act(
                subject, META, action.target_id, operation, idempotency_key=action.event_id
            )
        else:
            assert isinstance(operation, conversations.Action)
            assert action.target_id is not None
            await runtime.conversations.act(
                action.target_id,
                META,
                operation,
                idempotency_key=action.event_id,
                subject_id=subject,
            )
    return time.perf_counter() - started


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


async def run(args: argparse.Namespace, progress: Callable[[str], None]) -> ScenarioResult:
    rates: dict[str, list[float]] = {"ours": [], "single": []}
    p50s: dict[str, list[float]] = {"ours": [], "single": []}
    p99s: dict[str, list[float]] = {"ours": [], "single": []}
    async with catching_up.fresh_runtime("bench_sync") as (runtime, url):
        await batched(runtime)  # warm up both paths
        await one_by_one(runtime)
        for n in range(args.rounds):
            progress(f"round {n + 1} of {args.rounds}: {args.batches} batches each way")
            times: dict[str, list[float]] = {"ours": [], "single": []}
            for b in range(args.batches):
                pair = [("ours", batched), ("single", one_by_one)]
                for name, measure_one in pair if (n + b) % 2 == 0 else reversed(pair):
                    times[name].append(await measure_one(runtime))
            for name, seconds in times.items():
                rates[name].append(ACTIONS * len(seconds) / sum(seconds))
                p50s[name].append(statistics.median(seconds) * 1000)
                p99s[name].append(p99(seconds) * 1000)
        postgres = await server_version(url)
    single = "the same 100 actions, one service call each"
    return ScenarioResult(
        slug="sync",
        title="Offline sync: a batch of 100 mixed actions against the same actions one by one",
        command=".venv/bin/python -m bench.sync "
        + shlex.join(["--batches", str(args.batches), "--rounds", str(args.rounds)]),
        figures=[
            Figure(
                "actions applied by sync batches of 100",
                "actions/s",
                rates["ours"],
                single,
                rates["single"],
                goal=GOAL_FASTER,
            ),
            Figure(
                "a batch of 100 actions, p50",
                "ms",
                p50s["ours"],
                single,
                p50s["single"],
                higher_is_better=False,
            ),
            Figure(
                "a batch of 100 actions, p99",
                "ms",
                p99s["ours"],
                single,
                p99s["single"],
                higher_is_better=False,
            ),
        ],
        about=about_the_run(
            postgres, "asyncio", batches=args.batches, rounds=args.rounds, actions=ACTIONS
        ),
    )


measure, main = catching_up.entry_points(parse_args, run)


if __name__ == "__main__":
    main()
