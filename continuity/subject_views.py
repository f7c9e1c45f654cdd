"""Runs a subject view (`projections.view`): each subject's document sealed with that subject's
key in the view's table, folded inline in the append's transaction or by a runner or rebuild.

A stored document the new events do not follow (it already holds one of them, or skips a
version: a stale row put back, a lost write) is never folded onto: that subject's document is
rebuilt from their events in the log, and a gap in the log itself is an integrity violation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Generic, TypeVar
from uuid import UUID

import msgspec

from continuity.db import Conn, Queryable
from continuity.errors import IntegrityViolation, SubjectErased
from continuity.mapper import EventMapper
from continuity.projection import Mode, Placement
from continuity.store import EventStore
from privacy.cipher import DecryptionFailed, SubjectKey, row_aad, seal, unseal
from privacy.vault import KeyVault
from projections.envelope import Envelope, VersionGap
from projections.tables import Table
from projections.view import Folded, SubjectView

S = TypeVar("S", bound=msgspec.Struct)

log = logging.getLogger("continuity.projections")

_ENCODER = msgspec.msgpack.Encoder()


class SealedViews(Generic[S]):
    """The `Projection` of a `SubjectView`; `handle` returns each folded subject's state."""

    def __init__(
        self,
        view: SubjectView[S],
        vault: KeyVault,
        store: EventStore,
        mapper: EventMapper,
        mode: Mode = "inline",
    ) -> None:
        self.view = view
        self.vault = vault
        self.store = store
        self.mapper = mapper
        self.mode: Mode = mode
        document: Any = Folded
        self._decoder = msgspec.msgpack.Decoder(document[view.state_type])

    @property
    def name(self) -> str:
        return self.view.name

    @property
    def topics(self) -> tuple[str, ...]:
        return self.view.topics

    @property
    def tables(self) -> tuple[Table, ...]:
        return self.view.tables

    @property
    def version(self) -> int:
        return self.view.version

    def written(self, projected: Mapping[str, Any]) -> dict[UUID, S]:
        """What an inline append folded into this view, by subject."""
        states: dict[UUID, S] = projected.get(self.name, {})
        return states

    async def load(self, conn: Queryable, subject_id: UUID) -> S | None:
        row = await conn.fetchrow(
            f"SELECT key_version, body FROM {self.view.table} WHERE subject_id = $1", subject_id
        )
        if row is None:
            return None
        keys = await self.vault.keys_for_reading([(subject_id, row["key_version"])])
        key = keys.get((subject_id, row["key_version"]))
        if key is None:
            if await self.vault.erased_among([subject_id]):
                raise SubjectErased(subject_id)
            raise IntegrityViolation(f"the {self.name} view of subject {subject_id}: no key")
        return self._open(key, subject_id, row["body"]).state

    async def handle(
        self, conn: Conn, placement: Placement, envelopes: list[Envelope]
    ) -> dict[UUID, S]:
        """Fold each subject's events into their row, locked against a concurrent fold, and
        seal it with the newest key their events were sealed with."""
        table = placement[self.view.table]
        batches: dict[UUID, list[Envelope]] = {}
        for envelope in envelopes:
            if not envelope.erased:
                batches.setdefault(envelope.subject_id, []).append(envelope)
        if not batches:
            return {}
        subjects = sorted(batches)
        rows = {
            row["subject_id"]: row
            for row in await conn.fetch(
                f"SELECT subject_id, key_version, body FROM {table}"
                " WHERE subject_id = ANY($1::uuid[]) ORDER BY subject_id FOR UPDATE",
                subjects,
            )
        }
        newest = {s: max(e.key_version for e in batch) for s, batch in batches.items()}
        wanted = set(newest.items())
        wanted |= {(s, row["key_version"]) for s, row in rows.items()}
        keys = await self.vault.keys_for_reading(wanted, conn)
        states: dict[UUID, S] = {}
        sealed: list[tuple[UUID, int, int, bytes]] = []
        gone: list[UUID] = []
        for subject in subjects:
            batch = batches[subject]
            key = keys.get((subject, newest[subject]))
            row = rows.get(subject)
            stored = keys.get((subject, row["key_version"])) if row is not None else None
            if key is None or (row is not None and stored is None):
                gone.append(subject)
                continue
            folded = self.view.empty()
            if row is not None and stored is not None:
                folded = self._open(stored, subject, row["body"])
            if self.view.follows(folded, batch):
                folded = self.view.fold(folded, batch)
            else:
                log.warning("the %s view of subject %s disagrees with the log", self.name, subject)
                folded = await self._refold(conn, subject)
            states[subject] = folded.state
            body = seal(key, _ENCODER.encode(folded), row_aad(self.view.table, subject))
            sealed.append((subject, key.version, folded.position, body))
        if gone:
            await self._forget_unreadable(conn, table, gone)
        await conn.execute(
            f"INSERT INTO {table} (subject_id, key_version, position, body)"
            " SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bytea[])"
            " ON CONFLICT (subject_id) DO UPDATE SET key_version = excluded.key_version,"
            " position = excluded.position, body = excluded.body, updated_at = now()",
            [s[0] for s in sealed],
            [s[1] for s in sealed],
            [s[2] for s in sealed],
            [s[3] for s in sealed],
        )
        return states

    async def _forget_unreadable(self, conn: Conn, table: str, subjects: list[UUID]) -> None:
        """Subjects whose key went while their events were in flight: erased ones lose their
        row; a key gone without an erasure is an integrity violation."""
        erased = await self.vault.erased_among(subjects, conn)
        if missing := [s for s in subjects if s not in erased]:
            raise IntegrityViolation(f"the {self.name} view of subject {missing[0]}: no key")
        await conn.execute(f"DELETE FROM {table} WHERE subject_id = ANY($1::uuid[])", subjects)

    async def _refold(self, conn: Conn, subject_id: UUID) -> Folded[S]:
        """The subject's document folded afresh from all their events in the log (inside the
        caller's transaction, so it includes what it appended)."""
        records = await self.store.select_subject(subject_id, conn)
        try:
            return self.view.fold(self.view.empty(), await self.mapper.to_envelopes(records, conn))
        except VersionGap as gap:
            raise IntegrityViolation(f"the log of subject {subject_id}: {gap}") from None

    def _open(self, key: SubjectKey, subject_id: UUID, body: bytes) -> Folded[S]:
        try:
            folded: Folded[S] = self._decoder.decode(
                unseal(key, body, row_aad(self.view.table, subject_id))
            )
        except (DecryptionFailed, msgspec.DecodeError):
            raise IntegrityViolation(f"the {self.name} view of subject {subject_id}") from None
        return folded
