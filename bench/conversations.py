"""Conversations: the cost of an action by the length of the conversation, and the agents'
conversation queue catching up.

    .venv/bin/python -m bench.conversations [--long 10000] [--actions 500] [--rounds 3]
        [--queue-conversations 2000] [--quick] [--json PATH]

- action: `ConversationService.act` (what `POST /v1/me/conversations/{id}/turns` runs: load
  the conversation from its snapshot and the events after it, add the turn, append it with the
  session row) on a conversation of 10 turns and one of `--long` turns, interleaved over
  `--rounds`; the goal is flat: p50 at the long one within 1.2x of the short one.
- queue: the `conversation_queue` runner catching up from nothing over `--queue-conversations`
  conversations (five events each), against reading and opening the same pages.

In process, on a fresh schema (dropped at the end) of CONTINUITY_BENCH_DATABASE_URL, else
CONTINUITY_DATABASE_URL, else the local server.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from uuid import UUID, uuid4

from aggregates.conversation import Author, Conversation
from aggregates.metadata import EventMeta
from bench import catching_up
from bench.appends import about_the_run, server_version
from bench.results import Figure, ScenarioResult
from continuity import conversations
from continuity.conversation_queue import ConversationQueue
from continuity.conversations import Turn
from continuity.repository import IdempotencyKey
from continuity.runtime import Runtime

GOAL_FLAT = 1.2
META = EventMeta("chat", "phone")
BATCH = 500
"""Turns per seeding append."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.conversations")
    parser.add_argument("--long", type=int, default=10_000, help="turns of the long conversation")
    parser.add_argument("--actions", type=int, default=500, help="turns per conversation, round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queue-conversations", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.long, args.actions, args.rounds, args.queue_conversations = 1_000, 100, 1, 200
    return args


async def seed_conversation(runtime: Runtime, turns: int) -> tuple[UUID, UUID]:
    """A customer with a conversation of `turns` turns, customer and bot in turn."""
    subject = uuid4()
    conversation = Conversation.open(subject, "web_chat", uuid4())
    for n in range(turns):
        author: Author = "customer" if n % 2 == 0 else "bot"
        conversation.add_turn(author, f"turn {n}: where is my parcel?", "web_chat")
        if len(conversation.pending_events) >= BATCH or n == turns - 1:
            await _save(runtime, conversation, subject)
    await runtime.conversations.get(conversation.id)  # leaves the snapshot a long replay makes
    return subject, conversation.id


async def _save(runtime: Runtime, conversation: Conversation, subject: UUID) -> None:
    key = IdempotencyKey(subject, uuid4())
    await runtime.repository.save(conversation, subject, META, key, b"bench")


async def action_p50(runtime: Runtime, subject: UUID, conversation: UUID, count: int) -> float:
    latencies = []
    for n in range(count):
        action = conversations.say("customer", None, Turn(f"and another thing {n}", "web_chat"))
        started = time.perf_counter()
        await runtime.conversations.act(
            conversation, META, action, idempotency_key=uuid4(), subject_id=subject
        )
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1000


async def seed_queue(runtime: Runtime, count: int) -> None:
    """`count` conversations of five events each: opened, two turns, handed off, accepted."""
    for _ in range(count):
        subject = uuid4()
        conversation = Conversation.open(subject, "sms", uuid4())
        conversation.add_turn("customer", "hello", "sms")
        conversation.add_turn("bot", "hi, how can I help?", "sms")
        conversation.request_handoff("asks for a person", "bot")
        conversation.accept("agent-1")
        await _save(runtime, conversation, subject)


async def run(args: argparse.Namespace, progress: Callable[[str], None]) -> ScenarioResult:
    async with catching_up.fresh_runtime("bench_conv") as (runtime, url):
        progress(f"seeding a conversation of 10 turns and one of {args.long:,}")
        short = await seed_conversation(runtime, 10)
        long = await seed_conversation(runtime, args.long)
        short_rounds: list[float] = []
        long_rounds: list[float] = []
        for n in range(args.rounds):
            progress(f"actions, round {n + 1} of {args.rounds}")
            pair = [(short, short_rounds), (long, long_rounds)]
            for (subject, conversation), rounds in pair if n % 2 == 0 else reversed(pair):
                await action_p50(runtime, subject, conversation, args.actions // 10)  # warm up
                rounds.append(await action_p50(runtime, subject, conversation, args.actions))
        progress(f"seeding {args.queue_conversations:,} conversations for the queue")
        await seed_queue(runtime, args.queue_conversations)
        events = await runtime.pool.fetchval(
            "SELECT count(*) FROM events WHERE topic = ANY($1::text[])",
            list(ConversationQueue().topics),
        )
        ours, feed = await catching_up.rounds(
            runtime, ConversationQueue(), events, args.rounds, progress
        )
        postgres = await server_version(url)
    return ScenarioResult(
        slug="conversations",
        title="Conversations: an action's cost by conversation length; the agents' queue"
        " catching up",
        command=".venv/bin/python -m bench.conversations "
        + shlex.join(
            [
                *("--long", str(args.long), "--actions", str(args.actions)),
                *("--rounds", str(args.rounds)),
                *("--queue-conversations", str(args.queue_conversations)),
            ]
        ),
        figures=[
            Figure(
                f"a turn's p50, in a conversation of {args.long:,} turns",
                "ms",
                long_rounds,
                "ours at 10 turns",
                short_rounds,
                higher_is_better=False,
                goal=GOAL_FLAT,
            ),
            Figure("a turn's p50, in a conversation of 10 turns", "ms", short_rounds),
            Figure(
                "conversation queue catch-up",
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
            actions=args.actions,
            rounds=args.rounds,
            queue_conversations=args.queue_conversations,
        ),
    )


measure, main = catching_up.entry_points(parse_args, run)


if __name__ == "__main__":
    main()
