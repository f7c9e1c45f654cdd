"""Domain events to encrypted rows and back.

eventsourcing's own Mapper does `vars(event)` -> JSON -> compress -> encrypt with one key and no
associated data. Here each event class gets a msgspec codec built from its dataclass fields
(positional, so field names are not repeated in every row), the payload is sealed with the
subject's own key, and the associated data binds it to its row. The stream id and version are
columns, so they are left out of the payload and put back on decoding.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from functools import cache
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic, resolve_topic

from aggregates.metadata import EventMeta
from continuity.errors import IntegrityViolation
from continuity.store import NewEvent, RecordedEvent
from privacy.cipher import DecryptionFailed, SubjectKey, event_aad, keyed_digest, seal, unseal
from privacy.vault import KeyVault
from projections.envelope import Envelope

_FROM_COLUMNS = ("originator_id", "originator_version")
_META_FIELDS = ("channel", "device", "actor_type", "actor_id")
_NOT_IN_DIGEST = frozenset({"timestamp"})


class _Codec:
    """Encodes one event class (plus its metadata) as a msgpack array."""

    def __init__(self, cls: type[DomainEvent]) -> None:
        self.cls = cls
        self.topic = get_topic(cls)
        hints = typing.get_type_hints(cls)
        self.fields = [f.name for f in dataclasses.fields(cls) if f.name not in _FROM_COLUMNS]
        self.digest_fields = [name for name in self.fields if name not in _NOT_IN_DIGEST]
        meta_types: list[tuple[str, Any]] = [
            ("m_device", str | None),
            ("m_actor_type", str),
            ("m_actor_id", str | None),
        ]
        self.struct: type[msgspec.Struct] = msgspec.defstruct(
            cls.__qualname__.replace(".", "_"),
            meta_types + [(name, hints[name]) for name in self.fields],
            array_like=True,
            frozen=True,
        )
        self.decoder = msgspec.msgpack.Decoder(self.struct)

    def encode(self, event: DomainEvent, meta: EventMeta) -> bytes:
        values = [getattr(event, name) for name in self.fields]
        return _ENCODER.encode(self.struct(meta.device, meta.actor_type, meta.actor_id, *values))

    def content(self, event: DomainEvent) -> bytes:
        """What an idempotent retry repeats exactly: the fields, less the time."""
        return _ENCODER.encode([getattr(event, name) for name in self.digest_fields])

    def decode(
        self, data: bytes, stream_id: UUID, version: int, channel: str
    ) -> tuple[DomainEvent, EventMeta]:
        decoded = self.decoder.decode(data)
        values = msgspec.structs.astuple(decoded)
        event = object.__new__(self.cls)
        state = dict(zip(self.fields, values[3:], strict=True))
        state["originator_id"] = stream_id
        state["originator_version"] = version
        event.__dict__.update(state)
        meta = EventMeta(channel, values[0], values[1], values[2])  # type: ignore[arg-type]
        return event, meta


_ENCODER = msgspec.msgpack.Encoder()


@cache
def _codec_for_class(cls: type[DomainEvent]) -> _Codec:
    return _Codec(cls)


@cache
def _codec_for_topic(topic: str) -> _Codec:
    cls = resolve_topic(topic)
    if not (isinstance(cls, type) and issubclass(cls, DomainEvent)):
        raise IntegrityViolation(f"topic {topic!r}, which is not an event class")
    return _codec_for_class(cls)


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
        key = await self.vault.key_for_writing(subject_id)
        return [
            self.seal_event(
                key,
                meta,
                event,
                event_id,
                None if request is None else request_digest(key, request, index),
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
        aad = event_aad(event_id, stream_id, version, codec.topic, key.subject_id)
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
            key_version=key.version,
            digest=digest,
            payload=seal(key, codec.encode(event, meta), aad),
        )

    async def to_envelopes(self, records: Sequence[RecordedEvent]) -> list[Envelope]:
        """Decrypt `records`. Rows of erased subjects become placeholders; a row whose tag does
        not verify, or whose key is missing without an erasure, raises IntegrityViolation."""
        if not records:
            return []
        keys = await self.vault.keys_for_reading((r.subject_id, r.key_version) for r in records)
        keyless = {r.subject_id for r in records if (r.subject_id, r.key_version) not in keys}
        erased = await self.vault.erased_among(keyless) if keyless else set()
        envelopes = []
        for record in records:
            key = keys.get((record.subject_id, record.key_version))
            if key is None:
                if record.subject_id not in erased:
                    raise IntegrityViolation(
                        f"the event at position {record.position}: its subject's key is missing"
                    )
                envelopes.append(_placeholder(record))
            else:
                envelopes.append(_open(key, record))
        return envelopes


def request_digest(key: SubjectKey, request: bytes, index: int) -> bytes:
    """The digest of the `index`-th event a request produced: the same for every retry."""
    return keyed_digest(key, b"request:" + index.to_bytes(4, "big") + request)


def _open(key: SubjectKey, record: RecordedEvent) -> Envelope:
    aad = event_aad(
        record.event_id, record.stream_id, record.version, record.topic, record.subject_id
    )
    try:
        plaintext = unseal(key, record.payload, aad)
    except DecryptionFailed:
        raise IntegrityViolation(
            f"the event at position {record.position}"
            f" (stream {record.stream_id}, version {record.version})"
        ) from None
    event, meta = _codec_for_topic(record.topic).decode(
        plaintext, record.stream_id, record.version, record.channel
    )
    return _envelope(record, event, meta)


def _placeholder(record: RecordedEvent) -> Envelope:
    return _envelope(record, None, None)


def _envelope(record: RecordedEvent, event: DomainEvent | None, meta: EventMeta | None) -> Envelope:
    return Envelope(
        position=record.position,
        stream_id=record.stream_id,
        version=record.version,
        subject_id=record.subject_id,
        topic=record.topic,
        channel=record.channel,
        recorded_at=record.recorded_at,
        event=event,
        meta=meta,
    )
