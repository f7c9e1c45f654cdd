"""Events evolve: old payloads in the log are read by newer event classes.

Each test writes events with one class, re-binds the class's topic to a newer class (as a
deployment of changed code would), and reads the rows back through the real store and mapper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.utils import clear_topic_cache, construct_topic, register_topic

from aggregates.metadata import EventMeta
from continuity import mapper as mapper_module
from continuity.errors import IntegrityViolation
from continuity.mapper import EventMapper
from continuity.store import EventStore, NewEvent
from privacy.cipher import event_aad, keyed_digest, seal
from privacy.vault import KeyVault

pytestmark = pytest.mark.anyio

META = EventMeta("app", device="phone-7", actor_type="agent", actor_id="agent-42")
LINE = "tests.continuity.test_codec:LineAdded"
PAIR = "tests.continuity.test_codec:Pair"
NOTE = "tests.continuity.test_codec:Noted"

Bind = Callable[[type[DomainEvent]], None]


# LineAdded, as it was and as it became.


class LineV1(Aggregate.Event):
    TOPIC = LINE
    sku: str
    name: str
    quantity: int


class LineV2(Aggregate.Event):
    """`name` became `title`; `unit_price` was added, and old lines were free."""

    TOPIC = LINE
    class_version = 2
    sku: str
    title: str
    quantity: int
    unit_price: Decimal

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["title"] = state.pop("name")
        state["unit_price"] = "0"


class LineV3(Aggregate.Event):
    """`quantity` became `count`, and a defaulted `gift` flag was added."""

    TOPIC = LINE
    class_version = 3
    sku: str
    title: str
    count: int
    unit_price: Decimal
    gift: bool = False

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        LineV2.upcast_v1_v2(state)

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["count"] = state.pop("quantity")


# Two fields of the same type, declared in one order and then in the other.


class Pair(Aggregate.Event):
    TOPIC = PAIR
    first: str
    second: str


class PairReordered(Aggregate.Event):
    TOPIC = PAIR
    second: str
    first: str


# Fields added with defaults, without a new class version or an upcaster.


class Noted(Aggregate.Event):
    TOPIC = NOTE
    text: str


class NotedWithMore(Aggregate.Event):
    TOPIC = NOTE
    text: str
    pinned: bool = False
    tags: list[str] = field(default_factory=list)


class NotedV2(Aggregate.Event):
    """`pinned` was added; before, the first note of a stream was the pinned one."""

    TOPIC = NOTE
    class_version = 2
    text: str
    pinned: bool

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["pinned"] = state["originator_version"] == 1


class Touched(Aggregate.Event):
    """No field of its own: its payload holds the timestamp alone."""

    TOPIC = "tests.continuity.test_codec:Touched"


@pytest.fixture
def bind() -> Iterator[Bind]:
    """`bind(cls)` makes `cls` the class its TOPIC resolves to from now on, as if the code had
    changed, and drops the mapper's cached codecs. Afterwards every binding is forgotten."""

    def forget() -> None:
        clear_topic_cache()
        mapper_module._codec_for_topic.cache_clear()
        mapper_module._codec_for_class.cache_clear()

    def rebind(cls: type[DomainEvent]) -> None:
        forget()
        register_topic(construct_topic(cls), cls)

    yield rebind
    forget()


def at(stream_id: UUID, version: int, cls: type[DomainEvent], **fields: object) -> DomainEvent:
    return cls(
        originator_id=stream_id,
        originator_version=version,
        timestamp=datetime.now(UTC),
        **fields,
    )


async def write(
    store: EventStore, mapper: EventMapper, subject: UUID, *events: DomainEvent
) -> list[int]:
    rows = await mapper.to_rows(subject, META, events, [uuid4() for _ in events])
    return await store.append(rows)


async def read(store: EventStore, mapper: EventMapper, stream_id: UUID) -> list[dict[str, Any]]:
    """Each event of the stream as its class and its state, after checking its metadata."""
    envelopes = await mapper.to_envelopes(await store.select_events(stream_id))
    states = []
    for envelope in envelopes:
        assert envelope.meta == META
        assert envelope.event is not None
        states.append({"class": type(envelope.event), **vars(envelope.event)})
    return states


def without_time(state: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(state.pop("timestamp"), datetime)
    return state


async def test_an_event_written_at_v1_is_read_upcast_to_v2(
    store: EventStore, mapper: EventMapper, bind: Bind
) -> None:
    stream, subject = uuid4(), uuid4()
    bind(LineV1)
    await write(
        store, mapper, subject, at(stream, 1, LineV1, sku="MUG", name="Blue mug", quantity=2)
    )
    bind(LineV2)
    [line] = await read(store, mapper, stream)
    assert without_time(line) == {
        "class": LineV2,
        "originator_id": stream,
        "originator_version": 1,
        "sku": "MUG",
        "title": "Blue mug",
        "quantity": 2,
        "unit_price": Decimal("0"),
    }


async def test_upcasters_chain_and_each_event_starts_from_its_own_version(
    store: EventStore, mapper: EventMapper, bind: Bind
) -> None:
    stream, subject = uuid4(), uuid4()
    bind(LineV1)
    await write(
        store, mapper, subject, at(stream, 1, LineV1, sku="MUG", name="Blue mug", quantity=2)
    )
    bind(LineV2)
    await write(
        store,
        mapper,
        subject,
        at(stream, 2, LineV2, sku="TEA", title="Green tea", quantity=3, unit_price=Decimal("4.2")),
    )
    bind(LineV3)
    await write(
        store,
        mapper,
        subject,
        at(stream, 3, LineV3, sku="PEN", title="Pen", count=1, unit_price=Decimal(1), gift=True),
    )
    lines = [without_time(line) for line in await read(store, mapper, stream)]
    assert [line.pop("originator_version") for line in lines] == [1, 2, 3]
    assert lines == [
        {
            "class": LineV3,
            "originator_id": stream,
            "sku": "MUG",
            "title": "Blue mug",
            "count": 2,
            "unit_price": Decimal("0"),
            "gift": False,
        },
        {
            "class": LineV3,
            "originator_id": stream,
            "sku": "TEA",
            "title": "Green tea",
            "count": 3,
            "unit_price": Decimal("4.2"),
            "gift": False,
        },
        {
            "class": LineV3,
            "originator_id": stream,
            "sku": "PEN",
            "title": "Pen",
            "count": 1,
            "unit_price": Decimal(1),
            "gift": True,
        },
    ]


async def test_upcasters_see_the_originator_id_and_version_as_in_eventsourcing(
    store: EventStore, mapper: EventMapper, bind: Bind
) -> None:
    stream, subject = uuid4(), uuid4()
    bind(Noted)
    await write(
        store,
        mapper,
        subject,
        at(stream, 1, Noted, text="first"),
        at(stream, 2, Noted, text="next"),
    )
    bind(NotedV2)
    notes = await read(store, mapper, stream)
    assert [(note["text"], note["pinned"]) for note in notes] == [("first", True), ("next", False)]


async def test_an_event_from_a_newer_class_version_is_read_by_name_without_upcasting(
    store: EventStore, mapper: EventMapper, bind: Bind
) -> None:
    """As with eventsourcing's Mapper: a process still running the older class (during a
    rolling deployment) reads the fields it knows and ignores the others."""
    stream, subject = uuid4(), uuid4()
    bind(NotedV2)
    await write(store, mapper, subject, at(stream, 1, NotedV2, text="call back", pinned=True))
    bind(Noted)
    [note] = await read(store, mapper, stream)
    assert without_time(note) == {
        "class": Noted,
        "originator_id": stream,
        "originator_version": 1,
        "text": "call back",
    }


async def test_reordered_fields_of_the_same_type_keep_their_values(
    store: EventStore, mapper: EventMapper, bind: Bind
) -> None:
    stream, subject = uuid4(), uuid4()
    bind(Pair)
    await write(store, mapper, subject, at(stream, 1, Pair, first="alpha", second="beta"))
    bind(PairReordered)
    [pair] = await read(store, mapper, stream)
    assert pair["class"] is PairReordered
    assert (pair["first"], pair["second"]) == ("alpha", "beta")


async def test_a_retry_with_reordered_fields_is_recognised_as_the_same_event(
    store: EventStore, mapper: EventMapper, bind: Bind
) -> None:
    """The content digest tells an idempotent retry from a reused event id; declaring the
    fields in another order does not change the event, so it must not change the digest."""
    stream, subject, event_id = uuid4(), uuid4(), uuid4()
    bind(Pair)
    first = await mapper.to_rows(
        subject, META, [at(stream, 1, Pair, first="alpha", second="beta")], [event_id]
    )
    positions = await store.append(first, {stream: 0})
    bind(PairReordered)
    retry = await mapper.to_rows(
        subject, META, [at(stream, 1, PairReordered, first="alpha", second="beta")], [event_id]
    )
    assert await store.append(retry, {stream: 0}) == positions


async def test_fields_added_with_defaults_read_old_events_with_the_defaults(
    store: EventStore, mapper: EventMapper, bind: Bind
) -> None:
    stream, subject = uuid4(), uuid4()
    bind(Noted)
    await write(store, mapper, subject, at(stream, 1, Noted, text="call back at noon"))
    bind(NotedWithMore)
    await write(
        store,
        mapper,
        subject,
        at(stream, 2, NotedWithMore, text="urgent", pinned=True, tags=["vip"]),
    )
    old, new = [without_time(state) for state in await read(store, mapper, stream)]
    assert old == {
        "class": NotedWithMore,
        "originator_id": stream,
        "originator_version": 1,
        "text": "call back at noon",
        "pinned": False,
        "tags": [],
    }
    assert (new["text"], new["pinned"], new["tags"]) == ("urgent", True, ["vip"])


async def test_an_event_with_no_field_of_its_own_round_trips(
    store: EventStore, mapper: EventMapper, bind: Bind
) -> None:
    stream, subject = uuid4(), uuid4()
    bind(Touched)
    touched = at(stream, 1, Touched)
    await write(store, mapper, subject, touched)
    [state] = await read(store, mapper, stream)
    assert state == {"class": Touched, **vars(touched)}


async def test_a_payload_without_a_class_version_fails_loudly(
    store: EventStore, mapper: EventMapper, vault: KeyVault, bind: Bind
) -> None:
    """The positional layout used before class versions were stored is not guessed at: its
    values cannot be told apart from a newer class's fields."""
    stream, subject, event_id = uuid4(), uuid4(), uuid4()
    bind(Pair)
    key = await vault.key_for_writing(subject)
    now = datetime.now(UTC)
    legacy = msgspec.msgpack.encode(
        [META.device, META.actor_type, META.actor_id, now, "alpha", "beta"]
    )
    aad = event_aad(event_id, stream, 1, PAIR, subject, META.channel, key.version, now)
    row = NewEvent(
        stream_id=stream,
        version=1,
        event_id=event_id,
        subject_id=subject,
        topic=PAIR,
        channel=META.channel,
        recorded_at=now,
        key_version=key.version,
        digest=keyed_digest(key, b"legacy"),
        payload=seal(key, legacy, aad),
    )
    await store.append([row])
    with pytest.raises(IntegrityViolation, match=r"version 1\).*does not decode"):
        await read(store, mapper, stream)
