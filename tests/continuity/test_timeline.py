"""The customer timeline, an async projection: one row per cart, application and conversation
event in log order, each kind summed up; a page handled twice changes nothing; a rebuild gives
the same rows; keyset pages with channel and kind filters; nothing personal in clear; an erased
customer's timeline is gone (SubjectErased)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from eventsourcing.domain import Aggregate

from aggregates.activity import Activity, OnScreen, Searched, Viewed
from aggregates.application import Application
from aggregates.cart import Cart
from aggregates.conversation import Attachment, Conversation
from aggregates.metadata import EventMeta
from continuity.cursors import BadCursor
from continuity.erasure import shred_subject
from continuity.errors import SubjectErased
from continuity.form_catalog import load_forms
from continuity.mapper import EventMapper
from continuity.projection import live
from continuity.rebuild import Rebuilder
from continuity.repository import IdempotencyKey, Repository
from continuity.runner import ProjectionRunner
from continuity.store import EventStore
from continuity.timeline import (
    KINDS,
    MAX_SUMMARY_TEXT,
    TIMELINE,
    Summary,
    Timeline,
    TimelineEntry,
    TimelineFilter,
)
from privacy.vault import KeyVault
from tests.aggregates.test_application import EMPLOYED, IDENTITY, LOAN, REVIEW
from tests.helpers import run_to_head
from tests.privacy.test_at_rest import table_bytes

pytestmark = pytest.mark.anyio

TODAY = date(2026, 11, 23)
WEB = EventMeta("web", "Zebulon's laptop")
APP = EventMeta("app", "Zebulon's phone")
EMAIL = EventMeta("email", "Zebulon's mail client")
AGENT = EventMeta("agent", None, "agent", "agent-ann")
SYSTEM = EventMeta("system", None, "system")
LONG_TEXT = "Where is my parcel Quokka-88? " * 40
MUG_NAME = "Zebulon's heirloom mug"


async def save(
    repository: Repository, aggregate: Aggregate, subject: UUID, meta: EventMeta
) -> None:
    await repository.save(aggregate, subject, meta, IdempotencyKey(subject, uuid4()), b"t")


MERGE_KINDS = {
    "cart.lines_merged",
    "cart.merged_into",
    "application.imported",
    "application.moved",
    "conversation.imported",
    "conversation.moved",
}
"""A guest merged into a customer at sign-in: on two subjects' timelines (tests/continuity/
test_merge.py)."""


async def a_customer_everywhere(store: EventStore, mapper: EventMapper) -> UUID:
    """One customer with every kind of event: a cart on the web, three applications on the
    app, a conversation by email handed to agents."""
    repository = Repository(store, mapper)
    subject = uuid4()
    cart = Cart(subject_id=subject)
    cart.add_item("MUG-1", MUG_NAME, Decimal("12.50"), 2)
    cart.add_item("TEA-1", "Tea", Decimal("4.20"), 1)
    cart.change_quantity("MUG-1", 3)
    cart.remove_item("TEA-1")
    cart.checkout()
    await save(repository, cart, subject, WEB)

    form = load_forms().latest("personal-loan")
    assert form is not None
    submitted = Application(subject_id=subject, form=form, start_key=uuid4())
    submitted.save_draft("identity", {"first_name": "Zebulon", "city": "Dublin"})
    submitted.complete_step("identity", IDENTITY, TODAY)
    submitted.go_back("identity")
    submitted.complete_step("identity", IDENTITY, TODAY)
    submitted.complete_step("employment", {**EMPLOYED, "status": "retired"}, TODAY)
    submitted.complete_step("loan", LOAN, TODAY)
    submitted.complete_step("review", REVIEW, TODAY)
    submitted.submit()
    await save(repository, submitted, subject, APP)
    withdrawn = Application(subject_id=subject, form=form, start_key=uuid4())
    withdrawn.withdraw()
    await save(repository, withdrawn, subject, APP)
    expired = Application(subject_id=subject, form=form, start_key=uuid4())
    await save(repository, expired, subject, APP)
    expired.expire()
    await save(repository, expired, subject, SYSTEM)

    conversation = Conversation(subject_id=subject, medium="email")
    attachment = Attachment(reference="s3://bucket/receipt-7.pdf", content_type="application/pdf")
    conversation.add_turn("customer", LONG_TEXT, "email", attachments=[attachment])
    conversation.request_handoff("parcel lost, refund asked", requested_by="orderbot")
    await save(repository, conversation, subject, EMAIL)
    conversation.accept("agent-ann")
    conversation.add_turn("agent", "I am on it, Zebulon.", "email", author_id="agent-ann")
    conversation.transfer("agent-ann", "agent-bob")
    await save(repository, conversation, subject, AGENT)
    conversation.resolve("customer")
    conversation.rate(4)
    conversation.reopen("customer")
    await save(repository, conversation, subject, EMAIL)
    activity = Activity(subject_id=subject)
    activity.record([Viewed(sku="MUG-1", name=MUG_NAME), Searched(query="mugs", results=2)])
    activity.record([OnScreen(screen="application", step="identity")])
    activity.set_personalization(False)
    await save(repository, activity, subject, APP)
    return subject


async def catch_up(store: EventStore, mapper: EventMapper, timeline: Timeline) -> None:
    runner = ProjectionRunner(store, mapper, timeline, page_size=7)
    await run_to_head(runner)


async def everything(timeline: Timeline, pool: asyncpg.Pool, subject: UUID) -> list[TimelineEntry]:
    return (await timeline.page(pool, subject, limit=100, order="oldest")).entries


async def rows(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    """The table's clear columns (the sealed bodies differ by their random nonces)."""
    return [
        tuple(r)
        for r in await pool.fetch(
            f"SELECT position, subject_id, occurred_at, kind, channel, stream, stream_id,"
            f" version, key_version FROM {TIMELINE} ORDER BY position"
        )
    ]


async def test_every_kind_is_folded_with_its_channel_device_actor_and_summary(
    store: EventStore, mapper: EventMapper, vault: KeyVault, pool: asyncpg.Pool
) -> None:
    timeline = Timeline(vault)
    await Rebuilder(store, mapper).rebuild(timeline)
    subject = await a_customer_everywhere(store, mapper)
    await catch_up(store, mapper, timeline)
    entries = await everything(timeline, pool, subject)
    positions = [e.position for e in entries]
    assert positions == sorted(positions)
    assert {e.kind for e in entries} == set(KINDS) - MERGE_KINDS, "every kind, and only these"
    by_kind: dict[str, list[TimelineEntry]] = {}
    for entry in entries:
        by_kind.setdefault(entry.kind, []).append(entry)
        assert entry.stream == entry.kind.split(".")[0]

    added = by_kind["cart.item_added"][0]
    assert (added.channel, added.device, added.actor_type, added.actor_id) == (
        "web",
        WEB.device,
        "customer",
        None,
    )
    assert added.summary == Summary(sku="MUG-1", name=MUG_NAME, quantity=2)
    assert by_kind["cart.quantity_changed"][0].summary == Summary(sku="MUG-1", quantity=3)
    assert by_kind["cart.item_removed"][0].summary == Summary(sku="TEA-1")
    assert by_kind["cart.checked_out"][0].summary == Summary(total=Decimal("37.50"))

    started = by_kind["application.started"][0]
    assert (started.channel, started.device) == ("app", APP.device)
    assert started.summary == Summary(form_type="personal-loan", form_version=1, step="identity")
    draft = by_kind["application.draft_saved"][0].summary
    assert draft == Summary(step="identity", fields=["city", "first_name"])
    completed = by_kind["application.step_completed"][0].summary
    assert (completed.step, completed.next_step) == ("identity", "employment")
    assert completed.fields == sorted(IDENTITY)
    assert by_kind["application.stepped_back"][0].summary == Summary(step="identity")
    assert by_kind["application.submitted"][0].summary == Summary()
    assert len(by_kind["application.started"]) == 3
    assert len(by_kind["application.withdrawn"]) == 1
    expired = by_kind["application.expired"][0]
    assert (expired.channel, expired.actor_type, expired.device) == ("system", "system", None)

    opened = by_kind["conversation.opened"][0]
    assert (opened.channel, opened.device, opened.summary) == (
        "email",
        EMAIL.device,
        Summary(medium="email"),
    )
    first, reply = by_kind["conversation.turn_added"]
    assert first.summary.text == LONG_TEXT[:MAX_SUMMARY_TEXT]
    assert first.summary.text_truncated
    assert (first.summary.author, first.summary.medium) == ("customer", "email")
    assert first.summary.attachments is not None
    assert [(a.reference, a.content_type) for a in first.summary.attachments] == [
        ("s3://bucket/receipt-7.pdf", "application/pdf")
    ]
    assert (reply.channel, reply.actor_type, reply.actor_id) == ("agent", "agent", "agent-ann")
    assert reply.summary == Summary(
        author="agent", author_id="agent-ann", medium="email", text="I am on it, Zebulon."
    )
    assert by_kind["conversation.handoff_requested"][0].summary == Summary(
        reason="parcel lost, refund asked", requested_by="orderbot"
    )
    assert by_kind["conversation.handoff_accepted"][0].summary == Summary(agent_id="agent-ann")
    assert by_kind["conversation.transferred"][0].summary == Summary(
        from_agent="agent-ann", to_agent="agent-bob"
    )
    assert by_kind["conversation.resolved"][0].summary == Summary(by="customer")
    assert by_kind["conversation.rated"][0].summary == Summary(rating=4)
    assert by_kind["conversation.reopened"][0].summary == Summary(by="customer")

    viewed = by_kind["activity.product_viewed"][0]
    assert (viewed.channel, viewed.device) == ("app", APP.device)
    assert viewed.summary == Summary(sku="MUG-1", name=MUG_NAME)
    assert by_kind["activity.searched"][0].summary == Summary(query="mugs", results=2)
    screen = by_kind["activity.screen_shown"][0].summary
    assert screen == Summary(screen="application", step="identity")
    assert by_kind["activity.personalization_set"][0].summary == Summary(allowed=False)

    answers = str(entries)
    for answer in (IDENTITY["last_name"], IDENTITY["email"], EMPLOYED["monthly_income"]):
        assert str(answer) not in answers, "no application answer is copied"


async def test_a_page_handled_twice_changes_nothing_and_a_rebuild_gives_the_same_rows(
    store: EventStore, mapper: EventMapper, vault: KeyVault, pool: asyncpg.Pool
) -> None:
    timeline = Timeline(vault)
    rebuilder = Rebuilder(store, mapper)
    await rebuilder.rebuild(timeline)
    subjects = [await a_customer_everywhere(store, mapper) for _ in range(2)]
    await catch_up(store, mapper, timeline)
    once = await rows(pool)
    opened = [await everything(timeline, pool, s) for s in subjects]
    assert len(once) == sum(len(o) for o in opened) > 0

    page = await store.select_notifications(0, 10_000, topics=timeline.topics)
    envelopes = await mapper.to_envelopes(page)
    async with pool.acquire() as conn, conn.transaction():
        await timeline.handle(conn, live(timeline), envelopes)
        await timeline.handle(conn, live(timeline), envelopes[3:9])
    assert await rows(pool) == once
    assert [await everything(timeline, pool, s) for s in subjects] == opened

    await rebuilder.rebuild(timeline)
    assert await rows(pool) == once
    assert [await everything(timeline, pool, s) for s in subjects] == opened


async def test_pages_by_cursor_with_channel_and_kind_filters(
    store: EventStore, mapper: EventMapper, vault: KeyVault, pool: asyncpg.Pool
) -> None:
    timeline = Timeline(vault)
    await Rebuilder(store, mapper).rebuild(timeline)
    subject = await a_customer_everywhere(store, mapper)
    other = await a_customer_everywhere(store, mapper)
    await catch_up(store, mapper, timeline)
    oldest_first = await everything(timeline, pool, subject)
    assert {e.position for e in oldest_first}.isdisjoint(
        e.position for e in await everything(timeline, pool, other)
    )

    seen: list[TimelineEntry] = []
    cursor = None
    while True:
        found = await timeline.page(pool, subject, limit=4, cursor=cursor)
        assert len(found.entries) <= 4
        seen += found.entries
        cursor = found.next_cursor
        if cursor is None:
            break
    assert seen == oldest_first[::-1], "newest first by default, every entry once"

    where = TimelineFilter(channels=frozenset({"email", "agent"}))
    talk = (await timeline.page(pool, subject, where, limit=100)).entries
    assert talk
    assert {e.channel for e in talk} == {"email", "agent"}
    assert {e.stream for e in talk} == {"conversation"}

    where = TimelineFilter(kinds=frozenset({"conversation", "cart.checked_out"}))
    kinds = (await timeline.page(pool, subject, where, limit=100, order="oldest")).entries
    assert [e.position for e in kinds] == [
        e.position
        for e in oldest_first
        if e.stream == "conversation" or e.kind == "cart.checked_out"
    ]
    where = TimelineFilter(channels=frozenset({"web"}), kinds=frozenset({"application"}))
    assert (await timeline.page(pool, subject, where)).entries == []

    first = await timeline.page(pool, subject, limit=3, order="oldest")
    second = await timeline.page(pool, subject, limit=3, order="oldest", cursor=first.next_cursor)
    assert [e.position for e in first.entries + second.entries] == [
        e.position for e in oldest_first[:6]
    ]
    past_the_end = await timeline.page(pool, subject, limit=100, cursor="z" * 13)
    assert past_the_end.entries == oldest_first[::-1], "any cursor of the form names a place"
    for bad in ("Nonsense", "", "-1", "a" * 14, "12 "):
        with pytest.raises(BadCursor):
            await timeline.page(pool, subject, cursor=bad)
    assert (await timeline.page(pool, uuid4())).entries == [], "a newcomer's is empty"


async def test_no_personal_value_is_in_clear_and_an_erased_customers_timeline_is_gone(
    store: EventStore,
    mapper: EventMapper,
    vault: KeyVault,
    pool: asyncpg.Pool,
    database_url: str,
    schema: str,
) -> None:
    timeline = Timeline(vault)
    await Rebuilder(store, mapper).rebuild(timeline)
    subject = await a_customer_everywhere(store, mapper)
    await catch_up(store, mapper, timeline)
    assert len(await everything(timeline, pool, subject)) > 20
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        await conn.execute("CHECKPOINT")  # the rows reach the table's file on disk
        scanned = [(n, d) for n, d in await table_bytes(conn, schema) if n.startswith(TIMELINE)]
        heap = await conn.fetchval("SELECT pg_read_binary_file(pg_relation_filepath($1))", TIMELINE)
    finally:
        await conn.close()
    assert b"conversation.turn_added" in heap, "the file holds the rows: the scan sees them"
    scanned.append(("timeline heap file", heap))
    for value in ("Zebulon", "Quokka-88", "heirloom", "MUG-1", "agent-ann", "receipt-7", "refund"):
        for name, data in scanned:
            assert value.lower().encode() not in data.lower(), f"{value!r} in clear in {name}"

    await shred_subject(store, vault, subject)
    assert (
        await pool.fetchval(f"SELECT count(*) FROM {TIMELINE} WHERE subject_id = $1", subject) == 0
    )
    with pytest.raises(SubjectErased):
        await timeline.page(pool, subject)


async def test_an_erasure_racing_the_runner_leaves_no_readable_row(
    store: EventStore, mapper: EventMapper, vault: KeyVault, pool: asyncpg.Pool
) -> None:
    """Events opened before the erasure and folded after it write nothing; a row left behind
    anyway (put back from a copy) opens for nobody."""
    timeline = Timeline(vault)
    await Rebuilder(store, mapper).rebuild(timeline)
    subject = await a_customer_everywhere(store, mapper)
    page = await store.select_notifications(0, 10_000, topics=timeline.topics)
    opened_before = await mapper.to_envelopes(page)
    await catch_up(store, mapper, timeline)
    kept = await pool.fetch(f"SELECT * FROM {TIMELINE} WHERE subject_id = $1", subject)
    await shred_subject(store, vault, subject)

    async with pool.acquire() as conn, conn.transaction():
        await timeline.handle(conn, live(timeline), opened_before)
    assert await rows(pool) == []

    columns = list(kept[0].keys())
    await pool.executemany(
        f"INSERT INTO {TIMELINE} ({', '.join(columns)})"
        f" VALUES ({', '.join(f'${n + 1}' for n in range(len(columns)))})",
        [tuple(row) for row in kept],
    )
    with pytest.raises(SubjectErased):
        await timeline.page(pool, subject)
