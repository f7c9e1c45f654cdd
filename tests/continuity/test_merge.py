"""Merging a guest into the customer who signs in, through the real runtime on PostgreSQL: the
cart's quantities add, an application continues at its step, a handed-off conversation keeps its
transcript and its place in the agents' queue, the guest's originals are closed, a second merge
changes nothing, a concurrent cart action is not lost, every view folded inline or by its runner
is what a rebuild makes, the guest's recent activity joins the customer's unless either refuses
personalization, and nothing personal is left in clear."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec
import pytest

from aggregates.activity import Activity, Item, Searched, Viewed
from aggregates.cart import MAX_QUANTITY
from aggregates.errors import InvalidState
from aggregates.metadata import EventMeta
from api.conversation_schemas import TranscriptEntry
from api.live_events import QUEUE_TOPICS, queue_message_of
from continuity import application_queue, carts, consents, conversation_queue
from continuity import applications as actions
from continuity import conversations as talk
from continuity.carts import CartService
from continuity.conversations import Turn
from continuity.merge import MergeSummary
from continuity.projection_status import lag
from continuity.runtime import Runtime
from continuity.timeline import TIMELINE, Summary
from continuity.turns import Turns
from tests.aggregates.test_application import EMPLOYED, IDENTITY
from tests.continuity.test_rebuild import from_the_log
from tests.continuity.test_runner import until
from tests.continuity.test_timeline import MERGE_KINDS
from tests.privacy.test_at_rest import table_bytes

pytestmark = pytest.mark.anyio

PHONE = EventMeta("app", "guest-phone")
LAPTOP = EventMeta("web", "laptop")
BOT = EventMeta("chat", None, "bot", "bot-1")
AGENT = EventMeta("agent", None, "agent", "agent-7")
ITEM_NAME = "Ouroboros Lantern 5521"
VIEWED_NAME = "Thistledown Samovar 7719"
TURN_TEXT = "my parcel to Quillby Lane never came"
ANSWER = "Wilhelmina"


async def add(
    runtime: Runtime, subject: UUID, sku: str, quantity: int, meta: EventMeta = PHONE
) -> None:
    command = carts.add_item(sku, f"{ITEM_NAME} {sku}", Decimal("2.50"), quantity)
    await runtime.carts.execute(subject, meta, command, idempotency_key=uuid4(), opens_cart=True)


async def mid_application(runtime: Runtime, subject: UUID) -> UUID:
    """A loan application with its first step done and a draft of the second."""
    app = await runtime.applications.start(subject, PHONE, "personal-loan", idempotency_key=uuid4())
    for action in (
        actions.complete_step("identity", {**IDENTITY, "first_name": ANSWER}),
        actions.save_draft("employment", {"status": "employed"}),
    ):
        await runtime.applications.act(subject, PHONE, app.id, action, idempotency_key=uuid4())
    return app.id


async def handed_off(runtime: Runtime, subject: UUID, text: str = TURN_TEXT) -> UUID:
    """A chat: the customer's question, the bot's answer, then a handoff to the agents."""
    conversations = runtime.conversations
    opened = await conversations.open(
        subject, PHONE, "web_chat", idempotency_key=uuid4(), first=Turn(text, "web_chat")
    )
    for action in (
        talk.say("bot", "bot-1", Turn("let me look that up", "web_chat")),
        talk.hand_off("needs a human", "bot-1"),
    ):
        await conversations.act(opened.id, BOT, action, idempotency_key=uuid4())
    return opened.id


async def saw(runtime: Runtime, subject: UUID, *items: Item, meta: EventMeta = PHONE) -> None:
    await runtime.activity.record(subject, meta, items, idempotency_key=uuid4())


async def event_count(runtime: Runtime) -> int:
    count: int = await runtime.pool.fetchval("SELECT count(*) FROM events")
    return count


async def a_guest_with_everything(runtime: Runtime) -> tuple[UUID, UUID, MergeSummary]:
    """A guest with a cart, an application and a handed-off conversation, merged into a
    customer who has a cart of their own."""
    guest, customer = uuid4(), uuid4()
    await add(runtime, guest, "LANTERN", 2)
    await add(runtime, guest, "WICK", 1)
    await add(runtime, customer, "LANTERN", 3, LAPTOP)
    await mid_application(runtime, guest)
    await handed_off(runtime, guest)
    await saw(runtime, guest, Viewed(sku="SAMOVAR", name=VIEWED_NAME), Searched(query="samovar"))
    return guest, customer, await runtime.merge.merge(guest, customer, LAPTOP)


async def test_the_guest_cart_adds_into_the_customers_and_is_closed(runtime: Runtime) -> None:
    guest, customer = uuid4(), uuid4()
    await add(runtime, guest, "LANTERN", 2)
    await add(runtime, guest, "WICK", 1)
    await add(runtime, guest, "OIL", 7)
    await add(runtime, customer, "LANTERN", 3, LAPTOP)
    await add(runtime, customer, "OIL", MAX_QUANTITY - 5, LAPTOP)
    summary = await runtime.merge.merge(guest, customer, LAPTOP)
    mine = await runtime.carts.cart(customer)
    assert mine is not None
    quantities = {item.sku: item.quantity for item in mine.items}
    assert quantities == {"LANTERN": 5, "WICK": 1, "OIL": MAX_QUANTITY}, "the sums, capped"
    theirs = await runtime.carts.cart(guest)
    assert theirs is not None
    assert (theirs.status, theirs.merged_into) == ("merged", mine.cart_id)
    assert (summary.cart_id, summary.cart_lines_moved, summary.cart_lines_capped) == (
        mine.cart_id,
        3,
        1,
    )
    assert (summary.cart_lines_left, summary.already_merged) == (0, False)
    with pytest.raises(InvalidState, match="merged"):
        await runtime.carts.execute(
            guest, PHONE, carts.change_quantity("WICK", 2), idempotency_key=uuid4()
        )


async def test_a_customer_without_a_cart_gets_one_in_the_guests_currency(
    runtime: Runtime,
) -> None:
    guest, customer, other = uuid4(), uuid4(), uuid4()
    command = carts.add_item("LANTERN", ITEM_NAME, Decimal("9.99"), 1, "USD")
    await runtime.carts.execute(guest, PHONE, command, idempotency_key=uuid4(), opens_cart=True)
    summary = await runtime.merge.merge(guest, customer, LAPTOP)
    mine = await runtime.carts.cart(customer)
    assert mine is not None
    assert (mine.currency, mine.item_count, summary.cart_id) == ("USD", 1, mine.cart_id)
    await add(runtime, other, "LANTERN", 1, LAPTOP)  # in the default currency, not USD
    second_guest = uuid4()
    await runtime.carts.execute(
        second_guest, PHONE, command, idempotency_key=uuid4(), opens_cart=True
    )
    left = await runtime.merge.merge(second_guest, other, LAPTOP)
    assert (left.cart_id, left.cart_lines_left, left.cart_currency_mismatch) == (None, 1, True)
    kept = await runtime.carts.cart(second_guest)
    assert kept is not None
    assert kept.status == "open", "its prices cannot be converted: the guest keeps it"


async def test_an_application_continues_for_the_customer_at_its_step(runtime: Runtime) -> None:
    guest, customer = uuid4(), uuid4()
    original = await mid_application(runtime, guest)
    summary = await runtime.merge.merge(guest, customer, LAPTOP)
    (moved,) = summary.applications.values()
    assert list(summary.applications) == [original]
    (view,) = await runtime.applications.of_customer(customer)
    assert (view.application_id, view.current_step, view.moved_from) == (
        moved,
        "employment",
        original,
    )
    assert view.completed["identity"]["first_name"] == ANSWER
    assert view.drafts == {"employment": {"status": "employed"}}
    app = await runtime.applications.act(
        customer,
        LAPTOP,
        moved,
        actions.complete_step("employment", EMPLOYED),
        idempotency_key=uuid4(),
    )
    assert (app.current, app.completed["employment"]["status"]) == ("employer", "employed")
    closed = await runtime.applications.get(guest, original)
    assert (closed.status, closed.moved_to) == ("moved", moved)
    with pytest.raises(InvalidState, match="moved"):
        await runtime.applications.act(
            guest,
            PHONE,
            original,
            actions.save_draft("loan", {"amount": "1"}),
            idempotency_key=uuid4(),
        )

    async def queued() -> bool:
        rows = await application_queue.page(runtime.pool, application_queue.QueueFilter())
        return {(r.application_id, r.status, r.current_step) for r in rows.rows} == {
            (original, "moved", None),
            (moved, "in_progress", "employer"),
        }

    await until(queued)


async def test_a_handed_off_conversation_keeps_its_transcript_and_place_in_the_queue(
    runtime: Runtime,
) -> None:
    guest, customer = uuid4(), uuid4()
    earlier = await handed_off(runtime, uuid4())
    original = await handed_off(runtime, guest)
    later = await handed_off(runtime, uuid4())
    _, before = await runtime.conversations.transcript(original, subject_id=guest)
    summary = await runtime.merge.merge(guest, customer, LAPTOP)
    moved = summary.conversations[original]
    conversation, after = await runtime.conversations.transcript(moved, subject_id=customer)
    assert (conversation.status, conversation.turns, conversation.handoff_reason) == (
        "waiting",
        2,
        "needs a human",
    )
    turns = [TranscriptEntry.of(e) for e in before if e.topic.endswith("TurnAdded")]
    entries = [TranscriptEntry.of(e) for e in after]
    assert [e.kind for e in entries] == ["imported", "turn", "turn"]
    assert entries[0].moved_from == original
    strip = ("version",)
    assert [_without(e, strip) for e in entries[1:]] == [_without(t, strip) for t in turns]

    async def queued() -> bool:
        waiting = await conversation_queue.page(runtime.pool, conversation_queue.QueueFilter())
        return [r.conversation_id for r in waiting.rows] == [earlier, moved, later]

    await until(queued)
    with pytest.raises(InvalidState, match="moved"):
        await runtime.conversations.act(
            original, AGENT, talk.accept("agent-7"), idempotency_key=uuid4()
        )
    taken = await runtime.conversations.act(
        moved, AGENT, talk.accept("agent-7"), idempotency_key=uuid4()
    )
    assert taken.status == "with_agent"
    (shown,) = await runtime.conversations.of_customer(customer)
    assert [t.text for t in shown.last_turns] == [TURN_TEXT, "let me look that up"]
    arrived, left = [
        (await runtime.mapper.to_envelopes(await runtime.store.select_events(s, lte=v)))[-1]
        for s, v in ((moved, 1), (original, None))
    ]
    live = [queue_message_of(e) for e in (arrived, left)]
    assert {arrived.topic, left.topic} <= set(QUEUE_TOPICS), "the agents' live queue hears both"
    assert [(m.event, json.loads(str(m.data))["status"]) for m in live] == [
        ("conversation.imported", "waiting"),
        ("conversation.moved_to", "moved"),
    ]


def _without(entry: TranscriptEntry, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(entry).items() if k not in names}


async def test_the_guests_recent_activity_joins_the_customers_in_time_order(
    runtime: Runtime,
) -> None:
    guest, customer = uuid4(), uuid4()
    await saw(runtime, guest, Viewed(sku="KETTLE", name="Kettle"), Searched(query="kettle"))
    await saw(runtime, customer, Viewed(sku="MUG", name="Mug"), meta=LAPTOP)
    await saw(runtime, guest, Viewed(sku="TEA", name="Tea", price=Decimal("4.20"), currency="EUR"))
    await saw(runtime, guest, Viewed(sku="MUG", name="Mug"))  # later than the customer's
    await saw(
        runtime, customer, Viewed(sku="LAMP", name="Lamp"), Searched(query="lamp"), meta=LAPTOP
    )
    summary = await runtime.merge.merge(guest, customer, LAPTOP)
    assert (summary.products_viewed_moved, summary.searches_moved) == (3, 1)
    assert not summary.activity_refused
    mine = (await runtime.carts.session(customer)).activity
    assert [(p.sku, p.device) for p in mine.recently_viewed] == [
        ("LAMP", LAPTOP.device),
        ("MUG", PHONE.device),
        ("TEA", PHONE.device),
        ("KETTLE", PHONE.device),
    ]
    times = [p.viewed_at for p in mine.recently_viewed]
    assert times == sorted(times, reverse=True)
    assert (mine.recently_viewed[2].price, mine.recently_viewed[2].currency) == (
        Decimal("4.20"),
        "EUR",
    )
    assert [s.query for s in mine.recent_searches] == ["lamp", "kettle"]
    theirs = (await runtime.carts.session(guest)).activity
    assert (theirs.recently_viewed, theirs.recent_searches) == ([], []), "it went"
    assert summary.already_merged is False


async def test_nothing_of_the_activity_moves_if_either_refuses_personalization(
    runtime: Runtime,
) -> None:
    guest, customer = uuid4(), uuid4()
    await saw(runtime, guest, Viewed(sku="KETTLE", name="Kettle"))
    await runtime.activity.set_personalization(guest, PHONE, False, idempotency_key=uuid4())
    await runtime.activity.set_personalization(guest, PHONE, True, idempotency_key=uuid4())
    await saw(runtime, guest, Searched(query="tea"))  # allowed again: this one may go
    await runtime.activity.set_personalization(customer, LAPTOP, False, idempotency_key=uuid4())
    events = await event_count(runtime)
    refused = await runtime.merge.merge(guest, customer, LAPTOP)
    assert await event_count(runtime) == events, "nothing written on either side"
    assert (refused.activity_refused, refused.products_viewed_moved, refused.searches_moved) == (
        True,
        0,
        0,
    )
    kept = (await runtime.carts.session(guest)).activity
    assert [s.query for s in kept.recent_searches] == ["tea"], "it stays with the guest"

    await runtime.activity.set_personalization(customer, LAPTOP, True, idempotency_key=uuid4())
    allowed = await runtime.merge.merge(guest, customer, LAPTOP)
    assert (allowed.activity_refused, allowed.products_viewed_moved, allowed.searches_moved) == (
        False,
        0,
        1,
    ), "what was seen before the guest's refusal never moves"
    mine = (await runtime.carts.session(customer)).activity
    assert ([p.sku for p in mine.recently_viewed], [s.query for s in mine.recent_searches]) == (
        [],
        ["tea"],
    )

    other_guest = uuid4()
    await saw(runtime, other_guest, Viewed(sku="LAMP", name="Lamp"))
    await runtime.activity.set_personalization(other_guest, PHONE, False, idempotency_key=uuid4())
    refusing = await runtime.merge.merge(other_guest, uuid4(), LAPTOP)
    assert (refusing.activity_refused, refusing.products_viewed_moved) == (True, 0)


async def test_merging_twice_changes_nothing(runtime: Runtime) -> None:
    guest, customer, first = await a_guest_with_everything(runtime)
    assert first.cart_lines_moved == 2
    assert len(first.applications) == len(first.conversations) == 1
    assert (first.products_viewed_moved, first.searches_moved) == (1, 1)
    events = await event_count(runtime)
    again = await runtime.merge.merge(guest, customer, LAPTOP)
    assert await event_count(runtime) == events
    assert again == msgspec.structs.replace(first, already_merged=True)
    await add(runtime, guest, "LATE", 1)  # the guest went on, on a second device
    third = await runtime.merge.merge(guest, customer, LAPTOP)
    assert (third.cart_lines_moved, third.already_merged) == (3, False)
    mine = await runtime.carts.cart(customer)
    assert mine is not None
    assert {i.sku for i in mine.items} == {"LANTERN", "WICK", "LATE"}


async def test_a_concurrent_cart_action_of_the_customer_is_not_lost(runtime: Runtime) -> None:
    """The laptop's adds come through another process (its own turns): they race the merge's
    append, and whichever loses runs again on the fresh state."""
    guest, customer = uuid4(), uuid4()
    await add(runtime, guest, "LANTERN", 2)
    await add(runtime, customer, "LANTERN", 1, LAPTOP)
    other_process = CartService(runtime.repository, runtime.sessions, runtime.vault, turns=Turns())

    async def laptop(sku: str) -> None:
        command = carts.add_item(sku, sku, Decimal("1.00"), 1)
        await other_process.execute(
            customer, LAPTOP, command, idempotency_key=uuid4(), opens_cart=True
        )

    skus = [f"LAPTOP-{n}" for n in range(4)]
    await asyncio.gather(
        runtime.merge.merge(guest, customer, LAPTOP), *(laptop(sku) for sku in skus)
    )
    mine = await runtime.carts.cart(customer)
    assert mine is not None
    assert {i.sku: i.quantity for i in mine.items} == {"LANTERN": 3, **dict.fromkeys(skus, 1)}


async def test_every_changed_view_is_what_a_rebuild_makes(runtime: Runtime) -> None:
    guest, customer, summary = await a_guest_with_everything(runtime)
    (moved,) = summary.conversations.values()
    queues: dict[str, Callable[[], Awaitable[list[Any]]]] = {
        "application_queue": lambda: _rows(runtime.pool, "application_queue", "application_id"),
        "conversation_queue": lambda: _rows(runtime.pool, "conversation_queue", "conversation_id"),
        TIMELINE: lambda: _rows(
            runtime.pool, TIMELINE, "position", "position, subject_id, kind, stream_id, version"
        ),
    }

    async def caught_up() -> bool:
        """Every queue's runner has applied the whole log: the rows compared are final."""
        for name in queues:
            if (await lag(runtime.pool, runtime.projections.get(name))).behind:
                return False
        return True

    await until(caught_up)
    for name, rows in queues.items():
        folded = await rows()
        await runtime.rebuilder.rebuild(runtime.projections.get(name))
        assert await rows() == folded, name
    ((old_app, new_app),) = summary.applications.items()
    shown = {
        (subject, e.kind): e.summary
        for subject in (guest, customer)
        for e in (await runtime.timeline.page(runtime.pool, subject, limit=100)).entries
        if e.kind in MERGE_KINDS
    }
    guest_cart = await runtime.carts.cart(guest)
    assert guest_cart is not None
    assert shown == {
        (guest, "cart.merged_into"): Summary(moved_to=summary.cart_id, lines=2),
        (customer, "cart.lines_merged"): Summary(
            moved_from=guest_cart.cart_id, lines=2, quantity=3
        ),
        (guest, "application.moved"): Summary(moved_to=new_app),
        (customer, "application.imported"): Summary(
            form_type="personal-loan",
            form_version=1,
            step="employment",
            fields=sorted(IDENTITY),
            moved_from=old_app,
        ),
        (guest, "conversation.moved"): Summary(moved_to=moved),
        (customer, "conversation.imported"): Summary(
            medium="web_chat", reason="needs a human", moved_from=next(iter(summary.conversations))
        ),
        (guest, "activity.merged"): Summary(moved_to=Activity.create_id(customer)),
        (customer, "activity.imported"): Summary(moved_from=Activity.create_id(guest)),
    }
    views = {s: await runtime.carts.session(s) for s in (guest, customer)}
    for subject, view in views.items():
        assert view == await from_the_log(runtime, subject)
    await runtime.rebuilder.rebuild(runtime.sessions)
    assert {s: await runtime.carts.session(s) for s in (guest, customer)} == views


async def _rows(
    pool: asyncpg.Pool, table: str, order: str, columns: str = "*"
) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await pool.fetch(f"SELECT {columns} FROM {table} ORDER BY {order}")]


async def test_nothing_personal_is_left_in_clear_after_a_merge(
    runtime: Runtime, database_url: str, schema: str
) -> None:
    guest, customer, _ = await a_guest_with_everything(runtime)

    async def timeline_has_both() -> bool:
        subjects = await runtime.pool.fetch(f"SELECT DISTINCT subject_id FROM {TIMELINE}")
        kinds = await runtime.pool.fetch(f"SELECT kind FROM {TIMELINE}")
        return {r[0] for r in subjects} == {guest, customer} and {
            "conversation.imported",
            "activity.imported",
        } <= {r[0] for r in kinds}

    await until(timeline_has_both)
    conn = await asyncpg.connect(database_url)
    try:
        tables = await table_bytes(conn, schema)
    finally:
        await conn.close()
    for value in (ITEM_NAME, TURN_TEXT, ANSWER, VIEWED_NAME, PHONE.device, LAPTOP.device):
        assert value is not None
        for table, data in tables:
            assert value.encode() not in data, f"{value!r} in clear in {table}"


async def test_a_moved_conversation_keeps_its_clock_in_the_analytics(runtime: Runtime) -> None:
    """A consenting guest's chat is handed off, then the guest signs in: the customer's copy is
    not opened or handed off again in the counts, and the agent's first reply on it is timed
    from the handoff on the guest's, not from the move."""
    guest, customer = uuid4(), uuid4()
    for subject in (guest, customer):
        choice = consents.one("analytics", True, "2026-01", "device")
        await runtime.consents.record(subject, PHONE, choice, idempotency_key=uuid4())
    original = await handed_off(runtime, guest)
    summary = await runtime.merge.merge(guest, customer, LAPTOP)
    moved = summary.conversations[original]
    agent = talk.accept("agent-7")
    await runtime.conversations.act(moved, AGENT, agent, idempotency_key=uuid4())
    reply = talk.say("agent", "agent-7", Turn("I am on it", "web_chat"))
    await runtime.conversations.act(moved, AGENT, reply, idempotency_key=uuid4())
    analytics = runtime.projections.get("analytics")

    async def caught_up() -> bool:
        return not (await lag(runtime.pool, analytics)).behind

    await until(caught_up)
    handoff_at = await _last_recorded(runtime, original, "HandoffRequested")
    reply_at = await _last_recorded(runtime, moved, "TurnAdded")
    row = await runtime.pool.fetchrow(
        "SELECT sum(opened) AS opened, sum(handed_off) AS handed_off,"
        " sum(first_replies) AS replies, sum(first_reply_seconds) AS waited"
        " FROM analytics_conversations"
    )
    assert row is not None
    assert (row["opened"], row["handed_off"], row["replies"]) == (1, 1, 1)
    assert row["waited"] == pytest.approx((reply_at - handoff_at).total_seconds(), abs=1e-5)


async def _last_recorded(runtime: Runtime, stream: UUID, event: str) -> datetime:
    """When the stream's last event of that class was recorded (the log's clear column)."""
    at: datetime = await runtime.pool.fetchval(
        "SELECT recorded_at FROM events WHERE stream_id = $1 AND topic LIKE $2"
        " ORDER BY version DESC LIMIT 1",
        stream,
        f"%.{event}",
    )
    return at
