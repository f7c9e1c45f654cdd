"""Runs a subject view (`projections.view`): each subject's document sealed with that subject's
key in the view's table, folded inline in the append's transaction or by a runner or rebuild.

A stored document the new events do not follow (it already holds one of them, or skips a
version: a stale row put back, a lost write) is never folded onto: that subject's document is
rebuilt from their events in the log, and a gap in the log itself is an integrity violation."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar
from uuid import UUID

import msgspec

from continuity.db import Conn, Queryable
from continuity.errors import IntegrityViolation, SubjectErased
from continuity.group_commit import ViewWrite
from continuity.mapper import EventMapper, key_class
from continuity.projection import Mode, Placement
from continuity.store import EventStore
from privacy.cipher import DecryptionFailed, SubjectKey, row_aad, seal, unseal
from privacy.vault import GENERAL, KeyVault
from projections.envelope import Envelope, VersionGap
from projections.tables import Table
from projections.view import Folded, SubjectView

S = TypeVar("S", bound=msgspec.Struct)

log = logging.getLogger("continuity.projections")

_ENCODER = msgspec.msgpack.Encoder()


class Read(msgspec.Struct, Generic[S], frozen=True, gc=False):
    """A subject's row as read before an append (`SealedViews.read`): its document (None: no
    row) and revision (the row's xmin, which the append's write checks; None: no row).
    `readable` is False when the row's key is gone (an erasure in flight)."""

    folded: Folded[S] | None
    revision: int | None
    readable: bool = True

    def version_of(self, stream_id: UUID) -> int | None:
        """The version of `stream_id` the row has folded (None: none of it, or no row)."""
        return None if self.folded is None else self.folded.streams.get(stream_id)


class SealedViews(Generic[S]):
    """The `Projection` of a `SubjectView`; `handle` returns each folded subject's state."""

    def __init__(
        self,
        view: SubjectView[S],
        vault: KeyVault,
        store: EventStore,
        mapper: EventMapper,
        mode: Mode = "inline",
        *,
        held: int = 20_000,
    ) -> None:
        """`held`: how many documents a rebuild keeps in memory between writes."""
        self.view = view
        self.held = held
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
        batches = _by_subject(envelopes)
        if not batches:
            return {}
        documents, gone = await self._read(conn, table, sorted(batches), lock=True)
        newest: dict[UUID, int] = {}
        for subject, batch in batches.items():
            if subject not in gone:
                _note_keys(newest, subject, batch)
                documents[subject] = await self._next(conn, subject, documents.get(subject), batch)
        gone += await self._write(conn, table, documents, newest)
        if gone:
            await self._forget_unreadable(conn, table, gone)
        return {subject: documents[subject].state for subject in batches if subject not in gone}

    @property
    def select_row(self) -> str:
        """The columns `opened` takes, from the live table (for a caller's own query)."""
        return f"key_version, body, xmin::text::bigint AS revision FROM {self.view.table}"

    async def read(self, conn: Queryable, subjects: Sequence[UUID]) -> dict[UUID, Read[S]]:
        """Each subject's live row, for `prepare` (`continuity.projection.Preparable`)."""
        rows = await conn.fetch(
            f"SELECT subject_id, {self.select_row} WHERE subject_id = ANY($1::uuid[])",
            list(subjects),
        )
        found: dict[UUID, Read[S]] = {subject: Read(None, None) for subject in subjects}
        for row in rows:
            found[row["subject_id"]] = await self.opened(
                row["subject_id"], row["key_version"], row["body"], row["revision"]
            )
        return found

    async def opened(
        self, subject_id: UUID, key_version: int, body: bytes, revision: int
    ) -> Read[S]:
        """A row read by `select_row`, opened with its subject's key."""
        keys = await self.vault.keys_for_reading([(subject_id, key_version)])
        key = keys.get((subject_id, key_version))
        if key is None:
            return Read(None, revision, readable=False)
        return Read(self._open(key, subject_id, body), revision)

    async def prepare(
        self, read: Mapping[UUID, object], envelopes: list[Envelope]
    ) -> tuple[list[ViewWrite], dict[UUID, S]] | None:
        """Each subject's document with `envelopes` folded in, sealed for the group commit
        with the newest key their events were sealed with; None when a row's key is gone or
        the events do not follow its document (`handle` then deals with it in the append's
        transaction: it forgets the row, or refolds the subject from the log)."""
        documents: dict[UUID, tuple[Folded[S], int | None]] = {}
        newest: dict[UUID, int] = {}
        for subject, batch in _by_subject(envelopes).items():
            before = read.get(subject)
            if not isinstance(before, Read) or not before.readable:
                return None
            folded = before.folded or self.view.empty()
            if not self.view.follows(folded, batch):
                return None
            _note_keys(newest, subject, batch)
            documents[subject] = (self.view.fold(folded, batch), before.revision)
        keys = await self._sealing_keys(documents, newest)
        writes: list[ViewWrite] = []
        for subject, (folded, revision) in documents.items():
            key = keys.get(subject)
            if key is None:
                return None
            body = self._seal(key, subject, folded)
            writes.append(ViewWrite(self.view.table, subject, revision, key.version, body))
        return writes, {subject: folded.state for subject, (folded, _) in documents.items()}

    def builder(self, placement: Placement) -> DocumentBuilder[S]:
        """What a rebuild feeds instead of `handle`: it keeps documents in memory between
        pages and writes each once (see `DocumentBuilder`)."""
        return DocumentBuilder(self, placement[self.view.table], self.held)

    async def _read(
        self, conn: Conn, table: str, subjects: list[UUID], *, lock: bool
    ) -> tuple[dict[UUID, Folded[S]], list[UUID]]:
        """The stored documents of `subjects` (in subject order, so concurrent folds lock rows
        in one order), and the subjects whose row's key is gone."""
        rows = await conn.fetch(
            f"SELECT subject_id, key_version, body FROM {table}"
            f" WHERE subject_id = ANY($1::uuid[]) ORDER BY subject_id{' FOR UPDATE' * lock}",
            subjects,
        )
        keys = await self.vault.keys_for_reading(
            ((row["subject_id"], row["key_version"]) for row in rows), conn
        )
        documents: dict[UUID, Folded[S]] = {}
        gone: list[UUID] = []
        for subject, key_version, body in rows:
            key = keys.get((subject, key_version))
            if key is None:
                gone.append(subject)
            else:
                documents[subject] = self._open(key, subject, body)
        return documents, gone

    async def _next(
        self, conn: Conn, subject: UUID, folded: Folded[S] | None, batch: list[Envelope]
    ) -> Folded[S]:
        """`folded` with `batch` folded in; refolded from the log if `batch` does not follow it."""
        folded = folded or self.view.empty()
        if self.view.follows(folded, batch):
            return self.view.fold(folded, batch)
        log.warning("the %s view of subject %s disagrees with the log", self.name, subject)
        return await self._refold(conn, subject)

    async def _write(
        self,
        conn: Conn,
        table: str,
        documents: Mapping[UUID, Folded[S]],
        newest: Mapping[UUID, int],
    ) -> list[UUID]:
        """Seal and upsert `documents`, each with its subject's key at `newest`; returns the
        subjects whose key is gone (nothing is written for them)."""
        keys = await self._sealing_keys(documents, newest, conn)
        sealed: list[tuple[UUID, int, int, bytes]] = []
        gone: list[UUID] = []
        for subject, folded in documents.items():
            key = keys.get(subject)
            if key is None:
                gone.append(subject)
                continue
            sealed.append((subject, key.version, folded.position, self._seal(key, subject, folded)))
        if sealed:
            await conn.execute(
                f"INSERT INTO {table} (subject_id, key_version, position, body)"
                " SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bytea[])"
                f" ON CONFLICT (subject_id) DO UPDATE SET key_version = excluded.key_version,"
                f" position = greatest({table}.position, excluded.position), body = excluded.body,"
                " updated_at = now()",
                *map(list, zip(*sealed, strict=True)),
            )
        return gone

    async def _sealing_keys(
        self, subjects: Iterable[UUID], newest: Mapping[UUID, int], conn: Queryable | None = None
    ) -> dict[UUID, SubjectKey]:
        """The key each subject's document is sealed with: the newest general key among its
        events (`_note_keys`), or their newest general key when these events had none (turns
        only: every append takes the general key too, for its digests); absent when the key
        is gone. Read on `conn` if given; no key is created here."""
        subjects = list(subjects)
        versions = {s: newest[s] for s in subjects if s in newest}
        if other := [s for s in subjects if s not in newest]:
            versions.update(await self.vault.newest_versions(other, GENERAL, conn))
        keys = await self.vault.keys_for_reading(versions.items(), conn)
        return {s: keys[(s, v)] for s, v in versions.items() if (s, v) in keys}

    async def refold(self, conn: Conn, subject_id: UUID, key_version: int | None) -> bool:
        """Fold the subject's stored document afresh from the log and seal it with their
        general key `key_version`, inside the caller's transaction (retention: what the
        expired events said leaves the view). False if they have no row."""
        table = self.view.table
        if not await conn.fetchval(
            f"SELECT EXISTS (SELECT FROM {table} WHERE subject_id = $1 FOR UPDATE)", subject_id
        ):
            return False
        folded = await self._refold(conn, subject_id)
        newest = {} if key_version is None else {subject_id: key_version}
        gone = await self._write(conn, table, {subject_id: folded}, newest)
        if gone:
            await self._forget_unreadable(conn, table, gone)
        return True

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

    def _seal(self, key: SubjectKey, subject_id: UUID, folded: Folded[S]) -> bytes:
        return seal(key, _ENCODER.encode(folded), row_aad(self.view.table, subject_id))

    def _open(self, key: SubjectKey, subject_id: UUID, body: bytes) -> Folded[S]:
        try:
            folded: Folded[S] = self._decoder.decode(
                unseal(key, body, row_aad(self.view.table, subject_id))
            )
        except (DecryptionFailed, msgspec.DecodeError):
            raise IntegrityViolation(f"the {self.name} view of subject {subject_id}") from None
        return folded


class DocumentBuilder(Generic[S]):
    """A rebuild's write-behind for a subject view. Inline, each batch rewrites the document of
    every subject it touches; a rebuild meets a subject in many pages, so it keeps their
    documents in memory and writes them when it holds `limit` of them, and at the end. The side
    table is the rebuild's alone (it holds the projection's rebuild lock), so nothing else
    writes those rows meanwhile."""

    def __init__(self, views: SealedViews[S], table: str, limit: int) -> None:
        self.views = views
        self.table = table
        self.limit = limit
        self._documents: dict[UUID, Folded[S]] = {}
        self._newest: dict[UUID, int] = {}
        self._written: set[UUID] = set()
        self._gone: set[UUID] = set()

    async def feed(self, conn: Conn, envelopes: list[Envelope]) -> None:
        """Fold a page (in log order, none erased); a subject written out before is read back."""
        batches = _by_subject(envelopes)
        if away := sorted(s for s in batches if s in self._written and s not in self._documents):
            stored, gone = await self.views._read(conn, self.table, away, lock=False)
            self._documents.update(stored)
            self._gone.update(gone)
        documents, newest, views = self._documents, self._newest, self.views
        for subject, batch in batches.items():
            if subject not in self._gone:
                _note_keys(newest, subject, batch)
                documents[subject] = await views._next(conn, subject, documents.get(subject), batch)
        if len(documents) >= self.limit:
            await self.flush(conn)

    async def flush(self, conn: Conn) -> None:
        """Write every document held, and let them go."""
        gone = [
            *self._gone,
            *await self.views._write(conn, self.table, self._documents, self._newest),
        ]
        if gone:
            await self.views._forget_unreadable(conn, self.table, gone)
        self._written.update(self._documents)
        self._written.difference_update(gone)
        self._documents.clear()
        self._gone.clear()
        for subject in gone:
            self._newest.pop(subject, None)


def _by_subject(envelopes: list[Envelope]) -> dict[UUID, list[Envelope]]:
    batches: dict[UUID, list[Envelope]] = {}
    for envelope in envelopes:
        if not envelope.erased:
            batches.setdefault(envelope.subject_id, []).append(envelope)
    return batches


def _note_keys(newest: dict[UUID, int], subject: UUID, batch: list[Envelope]) -> None:
    """Remember the newest general key version `subject`'s events were sealed with (a key of
    another class, such as a transcript's, may expire by age: never the view's)."""
    versions = [
        envelope.key_version
        for envelope in batch
        if envelope.event is not None and key_class(envelope.event) == GENERAL
    ]
    if versions and max(versions) > newest.get(subject, 0):
        newest[subject] = max(versions)
