"""Domain events to encrypted rows and back.

eventsourcing's own Mapper does `vars(event)` -> JSON -> compress -> encrypt with one key and no
associated data. Here each event class gets a msgspec codec built from its dataclass fields,
the payload is sealed with the subject's own key, and the associated data binds it to its row.
The stream id, version and time (`timestamp`, stored as `recorded_at`) are columns, so they are
left out of the payload and put back on decoding; the associated data binds every column that is
read back as part of the event (see `privacy.cipher.event_aad`).

The payload is the msgpack array `[class_version, device, actor_type, actor_id, fields]`, where
`fields` maps each field's name to its value; a sixth element, `occurred_at`, is there only for
an action a device queued offline (when the device says it happened: never an order). Keyed by
name, a payload survives fields being reordered, added with a default, or removed. The class
version says which `upcast_vN_vN+1` methods an old payload still needs, exactly as in
eventsourcing's Mapper.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic, resolve_topic

from aggregates.conversation import Conversation
from aggregates.metadata import EventMeta
from continuity.db import Queryable
from continuity.errors import IntegrityViolation
from continuity.store import NewEvent, RecordedEvent
from privacy.cipher import DecryptionFailed, SubjectKey, event_aad, keyed_digest, seal, unseal
from privacy.vault import CONVERSATION, GENERAL, KeyVault
from projections.envelope import Envelope

_FROM_COLUMNS = ("originator_id", "originator_version", "timestamp")


class _Stored(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Any event's payload, its fields not yet typed: what another class version is read as.
    Each class's own payload struct has the same header and its typed fields."""

    class_version: int
    device: str | None
    actor_type: str
    actor_id: str | None
    fields: dict[str, Any]
    occurred_at: datetime | None = None


_HEADER = [
    (f.name, f.type)
    for f in msgspec.structs.fields(_Stored)
    if f.name not in ("fields", "occurred_at")
]
_OCCURRED_AT = ("occurred_at", datetime | None, None)


class _Codec:
    """Encodes one event class (plus its class version and metadata), and decodes it back.

    An event written at the class's current version decodes in one typed msgspec decode. An
    older one decodes untyped; its state (with `originator_id` and `originator_version`, as
    eventsourcing gives it) goes through the class's upcasters, and msgspec then converts it
    to the current field types. Upcasters therefore see values as msgpack holds them: a
    Decimal or UUID as its string, a datetime as a datetime."""

    def __init__(self, cls: type[DomainEvent]) -> None:
        self.cls = cls
        self.topic = get_topic(cls)
        self.class_version: int = getattr(cls, "class_version", 1)
        hints = typing.get_type_hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.name not in _FROM_COLUMNS]
        self.fields = [f.name for f in fields]
        self.digest_fields = sorted(self.fields)
        name = cls.__qualname__.replace(".", "_")
        self.struct: type[msgspec.Struct] = msgspec.defstruct(
            name, [_struct_field(f, hints[f.name]) for f in fields], frozen=True, gc=False
        )
        payload = msgspec.defstruct(
            f"{name}_Payload",
            [*_HEADER, ("fields", self.struct), _OCCURRED_AT],
            array_like=True,
            frozen=True,
            gc=False,
        )
        self.decoder = msgspec.msgpack.Decoder(payload)
        self.values = _getter(self.fields)
        # What a payload at the current version starts with (all but the nils), with and
        # without `occurred_at`: msgspec writes the array's length and the int in their
        # shortest forms, so no other version starts the same way.
        self.current = (
            _ENCODER.encode((self.class_version, None, None, None, None))[:-4],
            _ENCODER.encode((self.class_version, None, None, None, None, None))[:-5],
        )

    def encode(self, event: DomainEvent, meta: EventMeta) -> bytes:
        fields = self.struct(*self.values(event))
        header = (self.class_version, meta.device, meta.actor_type, meta.actor_id, fields)
        if meta.occurred_at is None:
            return _ENCODER.encode(header)
        return _ENCODER.encode((*header, meta.occurred_at))

    def content(self, event: DomainEvent) -> bytes:
        """What an idempotent retry repeats exactly: the fields by name, in sorted order (so
        declaring them in another order changes nothing); the time is not a field here."""
        return _ENCODER.encode({name: getattr(event, name) for name in self.digest_fields})

    def decode(
        self, data: bytes, stream_id: UUID, version: int, channel: str, recorded_at: datetime
    ) -> tuple[DomainEvent, EventMeta]:
        if data.startswith(self.current):
            payload: Any = self.decoder.decode(data)
            state = msgspec.structs.asdict(payload.fields)
        else:
            payload = _STORED.decode(data)
            state = self._upcast(payload, stream_id, version, recorded_at)
        state["originator_id"] = stream_id
        state["originator_version"] = version
        state["timestamp"] = recorded_at
        event = object.__new__(self.cls)
        object.__setattr__(event, "__dict__", state)
        meta = EventMeta(
            channel,  # type: ignore[arg-type]
            payload.device,
            payload.actor_type,
            payload.actor_id,
            payload.occurred_at,
        )
        return event, meta

    def _upcast(
        self, payload: _Stored, stream_id: UUID, version: int, recorded_at: datetime
    ) -> dict[str, Any]:
        """The fields of an event written at another class version, at the current one. A
        newer version than the class knows is read by name, without upcasting."""
        state = payload.fields
        state["originator_id"] = stream_id
        state["originator_version"] = version
        state["timestamp"] = recorded_at
        from_version = payload.class_version
        while from_version < self.class_version:
            getattr(self.cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        return msgspec.structs.asdict(msgspec.convert(state, self.struct))


def _getter(names: Sequence[str]) -> Callable[[object], tuple[Any, ...]]:
    """The named attributes of an object as a tuple (`attrgetter` of one name returns the bare
    value instead)."""
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    return operator.attrgetter(*names)


def _struct_field(f: dataclasses.Field[Any], hint: Any) -> tuple[str, Any, Any] | tuple[str, Any]:
    """A msgspec field for a dataclass field, with its default: an added field with a default
    reads old payloads, which lack it, with that default."""
    if f.default is not dataclasses.MISSING:
        return (f.name, hint, f.default)
    if f.default_factory is not dataclasses.MISSING:
        return (f.name, hint, msgspec.field(default_factory=f.default_factory))
    return (f.name, hint)


_ENCODER = msgspec.msgpack.Encoder()
_STORED = msgspec.msgpack.Decoder(_Stored)


@cache
def _codec_for_class(cls: type[DomainEvent]) -> _Codec:
    return _Codec(cls)


@cache
def _codec_for_topic(topic: str) -> _Codec:
    cls = resolve_topic(topic)
    if not (isinstance(cls, type) and issubclass(cls, DomainEvent)):
        raise IntegrityViolation(f"topic {topic!r}, which is not an event class")
    return _codec_for_class(cls)


KEY_CLASSES: dict[type[DomainEvent], str] = {
    Conversation.TurnAdded: CONVERSATION,
    Conversation.TurnImported: CONVERSATION,
}
"""The events sealed with a key of their own class rather than the subject's `GENERAL` one:
what retention may expire by age without breaking the aggregate they belong to (a
conversation's turns: its state counts them, never holds them)."""


def key_class(event: DomainEvent) -> str:
    """The class of the subject's key that seals `event`."""
    return KEY_CLASSES.get(type(event), GENERAL)


class EventMapper:
    """Turns domain events into sealed rows, and rows into envelopes for the domain and folds."""

    def __init__(self, vault: KeyVault) -> None:
        self.vault = vault

    async def to_rows(
        self,
        subject_id: UUID,
        meta: EventMeta,
        events: Sequence[DomainEvent],
        event_ids: Sequence[UUID],
        request: bytes | None = None,
    ) -> list[NewEvent]:
        """Seal `events`. With `request` (a fingerprint of the command that produced them) each
        row's digest identifies the request, so a retry matches even if the state moved on."""
        keys = {GENERAL: await self.vault.key_for_writing(subject_id)}
        for event in events:
            cls = key_class(event)
            if cls not in keys:
                keys[cls] = await self.vault.key_for_writing(subject_id, cls)
        return [
            self.seal_event(
                keys[key_class(event)],
                meta,
                event,
                event_id,
                None if request is None else request_digest(keys[GENERAL], request, index),
            )
            for index, (event, event_id) in enumerate(zip(events, event_ids, strict=True))
        ]

    @staticmethod
    def seal_event(
        key: SubjectKey,
        meta: EventMeta,
        event: DomainEvent,
        event_id: UUID,
        digest: bytes | None = None,
    ) -> NewEvent:
        """One sealed row; `digest` defaults to a keyed digest of the event's content."""
        codec = _codec_for_class(type(event))
        stream_id = event.originator_id
        assert isinstance(stream_id, UUID)
        version = event.originator_version
        recorded_at = event.timestamp
        aad = event_aad(
            event_id,
            stream_id,
            version,
            codec.topic,
            key.subject_id,
            meta.channel,
            key.version,
            recorded_at,
        )
        if digest is None:
            digest = keyed_digest(
                key, codec.topic.encode() + stream_id.bytes + codec.content(event)
            )
        return NewEvent(
            stream_id=stream_id,
            version=version,
            event_id=event_id,
            subject_id=key.subject_id,
            topic=codec.topic,
            channel=meta.channel,
            recorded_at=recorded_at,
            key_version=key.version,
            digest=digest,
            payload=seal(key, codec.encode(event, meta), aad),
        )

    async def to_envelopes(
        self, records: Sequence[RecordedEvent], conn: Queryable | None = None
    ) -> list[Envelope]:
        """Decrypt `records`. Rows of erased subjects, and rows whose key retention destroyed
        (`expired` placeholders), become placeholders; a row whose tag does not verify, or
        whose key is missing without either, raises IntegrityViolation. Keys not cached are
        read on `conn` if given."""
        if not records:
            return []
        keys = await self.vault.keys_for_reading(
            ((r.subject_id, r.key_version) for r in records), conn
        )
        keyless = {
            (r.subject_id, r.key_version)
            for r in records
            if (r.subject_id, r.key_version) not in keys
        }
        erased = await self.vault.erased_among((s for s, _ in keyless), conn) if keyless else set()
        left = {pair for pair in keyless if pair[0] not in erased}
        expired = await self.vault.expired_among(left, conn) if left else set()
        envelopes = []
        for record in records:
            key = keys.get((record.subject_id, record.key_version))
            if key is None:
                if record.subject_id in erased:
                    envelopes.append(_placeholder(record))
                elif (record.subject_id, record.key_version) in expired:
                    envelopes.append(_placeholder(record, expired=True))
                else:
                    raise IntegrityViolation(
                        f"the event at position {record.position}: its subject's key is missing"
                    )
            else:
                envelopes.append(_open(key, record))
        return envelopes


def fields_of(event: DomainEvent) -> dict[str, Any]:
    """What the event says happened, by field name, without what the row's columns hold (its
    stream, version and time): the payload as stored, after any upcasting."""
    return {name: getattr(event, name) for name in _codec_for_class(type(event)).fields}


def request_digest(key: SubjectKey, request: bytes, index: int) -> bytes:
    """The digest of the `index`-th event a request produced: the same for every retry."""
    return keyed_digest(key, b"request:" + index.to_bytes(4, "big") + request)


def _open(key: SubjectKey, record: RecordedEvent) -> Envelope:
    aad = event_aad(
        record.event_id,
        record.stream_id,
        record.version,
        record.topic,
        record.subject_id,
        record.channel,
        record.key_version,
        record.recorded_at,
    )
    try:
        plaintext = unseal(key, record.payload, aad)
    except DecryptionFailed:
        raise IntegrityViolation(
            f"the event at position {record.position}"
            f" (stream {record.stream_id}, version {record.version})"
        ) from None
    try:
        event, meta = _codec_for_topic(record.topic).decode(
            plaintext, record.stream_id, record.version, record.channel, record.recorded_at
        )
    except msgspec.MsgspecError as exc:
        raise IntegrityViolation(
            f"the event at position {record.position}"
            f" (stream {record.stream_id}, version {record.version}),"
            f" whose payload does not decode as {record.topic}: {exc}"
        ) from None
    return envelope(record, record.position, event, meta)


def _placeholder(record: RecordedEvent, *, expired: bool = False) -> Envelope:
    return envelope(record, record.position, None, None, expired=expired)


def envelope(
    row: NewEvent | RecordedEvent,
    position: int,
    event: DomainEvent | None,
    meta: EventMeta | None,
    *,
    expired: bool = False,
) -> Envelope:
    """What a fold receives: a row read back, or one just appended at `position`."""
    return Envelope(
        position=position,
        stream_id=row.stream_id,
        version=row.version,
        subject_id=row.subject_id,
        topic=row.topic,
        channel=row.channel,
        recorded_at=row.recorded_at,
        key_version=row.key_version,
        event=event,
        meta=meta,
        expired=expired,
    )
