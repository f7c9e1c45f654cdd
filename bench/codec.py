"""The payload codec's cost per event: encode, seal, open and decode, with no database.

    .venv/bin/python -m bench.codec [--iterations 20000] [--repeat 7]

Round trips of one realistic `Cart.ItemAdded`, in µs per event:

- OURS: the mapper's per-event work. `_codec_for_class(cls).encode(event, meta)`, `event_aad`,
  `seal` with the subject's cached AES-GCM key; then `event_aad`, `unseal` and
  `_codec_for_topic(topic).decode(...)` back to the domain event and its metadata.
- ROW: the same through `EventMapper.seal_event` (which adds the keyed digest and builds the
  `NewEvent`) and the mapper's `_open` of the `RecordedEvent` (which builds the `Envelope`).
- PEER: eventsourcing 9.5.6's own `Mapper`: its `JSONTranscoder` with the UUID, Decimal and
  datetime transcodings and its `AESCipher` (`to_stored_event`, then `to_domain_event`).
- RAW: the ceiling. msgspec encodes a plain tuple of the same values, the same cached `AESGCM`
  seals and opens it (no associated data), and msgspec decodes it untyped.

Then two reads (open and decode only) of an event class at class version 2: a payload written
at version 2 (READ v2, the fast path) and one written at version 1 by an older class under the
same topic, which `upcast_v1_v2` brings up to date (READ v1, the upcast path). Where the codec
cannot read the old version, that line says so.

Each contender runs `--iterations` round trips per timed loop, with the garbage collector off
(as `timeit` does); the contenders take turns `--repeat` times and each one's best and median
loop are reported. This module uses only names that exist in the mapper both before and after
class versions were stored, so the same file measures both.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from time import perf_counter
from typing import Any
from uuid import UUID, uuid4

import msgspec
from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.utils import clear_topic_cache, register_topic

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from bench.contenders import ITEM_NAME, META, UNIT_PRICE, peer_mapper
from continuity import mapper as mapper_module
from continuity.store import RecordedEvent
from privacy.cipher import NONCE_BYTES, SubjectKey, event_aad, seal, unseal
from projections.envelope import Envelope

RoundTrip = Callable[[], object]

EVOLVING_TOPIC = "bench.codec:ItemAdded"


class ItemAddedV1(Aggregate.Event):
    """The line as first written."""

    TOPIC = EVOLVING_TOPIC
    sku: str
    name: str
    unit_price: Decimal
    quantity: int


class ItemAddedV2(Aggregate.Event):
    """The line after `name` became `title` and a currency was added."""

    TOPIC = EVOLVING_TOPIC
    class_version = 2
    sku: str
    title: str
    unit_price: Decimal
    quantity: int
    currency: str = "EUR"

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["title"] = state.pop("name")
        state["currency"] = "EUR"


@contextmanager
def bound(topic: str, cls: type[DomainEvent]) -> Iterator[None]:
    """Resolve `topic` to `cls` (as if the code had changed), forgetting cached codecs."""
    clear_topic_cache()
    register_topic(topic, cls)
    mapper_module._codec_for_topic.cache_clear()
    mapper_module._codec_for_class.cache_clear()
    try:
        yield
    finally:
        clear_topic_cache()
        mapper_module._codec_for_topic.cache_clear()
        mapper_module._codec_for_class.cache_clear()


def at(
    cls: type[DomainEvent], stream_id: UUID, timestamp: datetime, **fields: object
) -> DomainEvent:
    """An event at version 2 of its stream."""
    return cls(originator_id=stream_id, originator_version=2, timestamp=timestamp, **fields)


def item_added() -> DomainEvent:
    cart = Cart(uuid4())
    cart.add_item("SKU-000042", ITEM_NAME, UNIT_PRICE, 2)
    event = cart.collect_events()[-1]
    assert isinstance(event, Cart.ItemAdded)
    return event


def a_key() -> SubjectKey:
    return SubjectKey.from_bytes(uuid4(), 1, os.urandom(32))


def ours(event: DomainEvent, key: SubjectKey) -> tuple[RoundTrip, int]:
    codec = mapper_module._codec_for_class(type(event))
    topic = codec.topic
    stream_id = event.originator_id
    assert isinstance(stream_id, UUID)
    version = event.originator_version
    event_id = uuid4()

    recorded_at = event.timestamp

    def associated() -> bytes:
        return event_aad(
            event_id, stream_id, version, topic, key.subject_id, META.channel, 1, recorded_at
        )

    def round_trip() -> tuple[DomainEvent, EventMeta]:
        sealed = seal(key, codec.encode(event, META), associated())
        return mapper_module._codec_for_topic(topic).decode(
            unseal(key, sealed, associated()), stream_id, version, META.channel, recorded_at
        )

    decoded, meta = round_trip()
    assert vars(decoded) == vars(event), "OURS does not round-trip"
    assert meta == META, "OURS does not round-trip the metadata"
    return round_trip, len(seal(key, codec.encode(event, META), associated()))


def row(event: DomainEvent, key: SubjectKey) -> tuple[RoundTrip, int]:
    def round_trip() -> Envelope:
        new = mapper_module.EventMapper.seal_event(key, META, event, uuid4())
        record = RecordedEvent(
            position=1,
            stream_id=new.stream_id,
            version=new.version,
            event_id=new.event_id,
            subject_id=new.subject_id,
            topic=new.topic,
            channel=new.channel,
            recorded_at=new.recorded_at,
            key_version=new.key_version,
            payload=new.payload,
            digest=new.digest,
        )
        return mapper_module._open(key, record)

    envelope = round_trip()
    assert envelope.event is not None, "ROW does not round-trip"
    assert vars(envelope.event) == vars(event), "ROW does not round-trip"
    return round_trip, len(mapper_module.EventMapper.seal_event(key, META, event, uuid4()).payload)


def peer(event: DomainEvent) -> tuple[RoundTrip, int]:
    mapper = peer_mapper()

    def round_trip() -> object:
        return mapper.to_domain_event(mapper.to_stored_event(event))

    assert vars(round_trip()) == vars(event), "PEER does not round-trip"
    return round_trip, len(mapper.to_stored_event(event).state)


def raw(event: DomainEvent, key: SubjectKey) -> tuple[RoundTrip, int]:
    values = (
        META.device,
        META.actor_type,
        META.actor_id,
        *(v for k, v in vars(event).items() if k not in ("originator_id", "originator_version")),
    )
    aead = key.aead
    encode = msgspec.msgpack.encode
    decode = msgspec.msgpack.decode

    def round_trip() -> object:
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + aead.encrypt(nonce, encode(values), None)
        return decode(aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], None))

    round_trip()
    return round_trip, NONCE_BYTES + len(aead.encrypt(bytes(NONCE_BYTES), encode(values), None))


def reads(key: SubjectKey) -> dict[str, tuple[RoundTrip | str, int]]:
    """READ v2 and READ v1: open and decode under ItemAddedV2, of payloads sealed at version 2
    and at version 1."""
    stream_id, event_id = uuid4(), uuid4()
    now = datetime.now(UTC)
    common: dict[str, object] = {"sku": "SKU-000042", "unit_price": UNIT_PRICE, "quantity": 2}
    aad = event_aad(event_id, stream_id, 2, EVOLVING_TOPIC, key.subject_id, META.channel, 1, now)
    with bound(EVOLVING_TOPIC, ItemAddedV1):
        old = at(ItemAddedV1, stream_id, now, **common, name=ITEM_NAME)
        sealed_v1 = seal(key, mapper_module._codec_for_class(ItemAddedV1).encode(old, META), aad)
    with bound(EVOLVING_TOPIC, ItemAddedV2):
        new = at(ItemAddedV2, stream_id, now, **common, title=ITEM_NAME)
        sealed_v2 = seal(key, mapper_module._codec_for_class(ItemAddedV2).encode(new, META), aad)
    expected = vars(new)

    def reader(sealed: bytes) -> RoundTrip | str:
        def read() -> tuple[DomainEvent, EventMeta]:
            with_aad = event_aad(
                event_id, stream_id, 2, EVOLVING_TOPIC, key.subject_id, META.channel, 1, now
            )
            return mapper_module._codec_for_topic(EVOLVING_TOPIC).decode(
                unseal(key, sealed, with_aad), stream_id, 2, META.channel, now
            )

        with bound(EVOLVING_TOPIC, ItemAddedV2):
            try:
                decoded, _ = read()
            except Exception as exc:  # the codec under test may not read old versions at all
                return f"fails: {type(exc).__name__}: {exc}"
        if vars(decoded) != expected:
            return f"wrong: {vars(decoded)}"
        return read

    return {
        "READ v2": (reader(sealed_v2), len(sealed_v2)),
        "READ v1": (reader(sealed_v1), len(sealed_v1)),
    }


def loop_seconds(op: RoundTrip, iterations: int) -> float:
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        started = perf_counter()
        for _ in range(iterations):
            op()
        return perf_counter() - started
    finally:
        if gc_was_enabled:
            gc.enable()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.codec",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--iterations", type=int, default=20_000, help="round trips per loop")
    parser.add_argument("--repeat", type=int, default=7, help="timed loops per contender")
    args = parser.parse_args(argv)

    event, key = item_added(), a_key()
    contenders: dict[str, tuple[RoundTrip | str, int]] = {
        "OURS": ours(event, key),
        "ROW": row(event, key),
        "PEER": peer(event),
        "RAW": raw(event, key),
    }
    contenders.update(reads(key))
    runnable = {name: op for name, (op, _) in contenders.items() if not isinstance(op, str)}
    loops: dict[str, list[float]] = {name: [] for name in runnable}
    names = list(runnable)
    for turn in range(args.repeat):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            op = runnable[name]
            if name.startswith("READ"):
                with bound(EVOLVING_TOPIC, ItemAddedV2):
                    op()
                    loops[name].append(loop_seconds(op, args.iterations))
            else:
                loops[name].append(loop_seconds(op, args.iterations))

    print(
        f"bench.codec: {args.iterations} round trips x {args.repeat} loops each;"
        f" Python {platform.python_version()}, msgspec {msgspec.__version__},"
        f" {platform.machine()} {os.cpu_count()} cores"
    )
    best: dict[str, float] = {}
    print(f"{'contender':<10} {'best µs':>9} {'median µs':>10} {'payload B':>10}")
    for name, (outcome, size) in contenders.items():
        if isinstance(outcome, str):
            print(f"{name:<10} {outcome}")
            continue
        per_event = [seconds / args.iterations * 1e6 for seconds in loops[name]]
        best[name] = min(per_event)
        print(f"{name:<10} {best[name]:>9.2f} {statistics.median(per_event):>10.2f} {size:>10}")
    print("ratios (best):")
    for numerator, denominator in (
        ("PEER", "OURS"),
        ("OURS", "RAW"),
        ("ROW", "OURS"),
        ("READ v1", "READ v2"),
    ):
        if numerator in best and denominator in best:
            print(f"  {numerator}/{denominator}: {best[numerator] / best[denominator]:.2f}x")


if __name__ == "__main__":
    main()
