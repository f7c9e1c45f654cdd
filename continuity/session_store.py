"""Stores the session projection: the fold from `projections.session`, sealed with the subject's
key, in `session_views`. `apply` runs inside the append's transaction.

A stored view that the new events do not follow (it skipped versions, or it already holds them:
a stale row, a lost write) is never folded onto: the subject's view is rebuilt from the log."""

from __future__ import annotations

import logging
from uuid import UUID

import msgspec

from continuity.db import Conn, Queryable
from continuity.errors import IntegrityViolation, SubjectErased
from continuity.mapper import EventMapper
from continuity.store import EventStore
from privacy.cipher import DecryptionFailed, SubjectKey, row_aad, seal, unseal
from privacy.vault import KeyVault
from projections import session
from projections.envelope import Envelope, VersionGap

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(session.SessionView)


log = logging.getLogger("continuity.sessions")


class SessionStore:
    def __init__(self, vault: KeyVault, store: EventStore, mapper: EventMapper) -> None:
        self.vault = vault
        self.store = store
        self.mapper = mapper

    async def load(self, conn: Queryable, subject_id: UUID) -> session.SessionView | None:
        row = await conn.fetchrow(
            "SELECT key_version, body FROM session_views WHERE subject_id = $1", subject_id
        )
        if row is None:
            return None
        key = await self._row_key(subject_id, row["key_version"])
        return self._open(key, subject_id, row["body"])

    async def _row_key(self, subject_id: UUID, key_version: int) -> SubjectKey:
        """The key a row was sealed with: SubjectErased if shredded (the row should be gone
        too), IntegrityViolation if it vanished any other way."""
        keys = await self.vault.keys_for_reading([(subject_id, key_version)])
        key = keys.get((subject_id, key_version))
        if key is not None:
            return key
        if await self.vault.erased_among([subject_id]):
            raise SubjectErased(subject_id)
        raise IntegrityViolation(f"the session view of subject {subject_id}: its key is missing")

    async def apply(
        self, conn: Conn, subject_id: UUID, envelopes: list[Envelope], key: SubjectKey
    ) -> session.SessionView:
        """Fold `envelopes` into the subject's row, sealed with `key` (the key the events were
        sealed with), locking the row against a concurrent fold."""
        row = await conn.fetchrow(
            "SELECT key_version, body FROM session_views WHERE subject_id = $1 FOR UPDATE",
            subject_id,
        )
        view = session.SessionView()
        if row is not None:
            old_key = key if row["key_version"] == key.version else None
            old_key = old_key or await self._row_key(subject_id, row["key_version"])
            view = self._open(old_key, subject_id, row["body"])
        try:
            if any(e.version <= view.streams.get(str(e.stream_id), 0) for e in envelopes):
                raise VersionGap(envelopes[0].stream_id, 0, envelopes[0].version)
            view = session.fold(view, envelopes)
        except VersionGap as gap:
            log.warning("session view of subject %s disagrees with the log (%s)", subject_id, gap)
            view = await self._rebuild(conn, subject_id)
        body = seal(key, _ENCODER.encode(view), row_aad(session.TABLE, subject_id))
        await conn.execute(
            "INSERT INTO session_views (subject_id, key_version, position, body)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (subject_id) DO UPDATE SET"
            " key_version = excluded.key_version, position = excluded.position,"
            " body = excluded.body, updated_at = now()",
            subject_id,
            key.version,
            view.position,
            body,
        )
        return view

    async def _rebuild(self, conn: Conn, subject_id: UUID) -> session.SessionView:
        """The subject's view folded afresh from every event of theirs in the log (inside the
        caller's transaction, so it includes the events just appended)."""
        records = await self.store.select_subject(subject_id, conn)
        try:
            return session.fold(session.SessionView(), await self.mapper.to_envelopes(records))
        except VersionGap as gap:
            raise IntegrityViolation(f"the log of subject {subject_id}: {gap}") from None

    @staticmethod
    def _open(key: SubjectKey, subject_id: UUID, body: bytes) -> session.SessionView:
        try:
            return _DECODER.decode(unseal(key, body, row_aad(session.TABLE, subject_id)))
        except DecryptionFailed:
            raise IntegrityViolation(f"the session view of subject {subject_id}") from None

    @staticmethod
    async def drop(conn: Conn, subject_id: UUID) -> int:
        """Delete the subject's rows (erasure); returns how many went."""
        status = await conn.execute("DELETE FROM session_views WHERE subject_id = $1", subject_id)
        return int(status.split()[-1])
