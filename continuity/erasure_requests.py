"""Erasure requests: a compliance officer's or a customer's request to erase a subject, carried
out by `shred_subject`, with its states, timestamps and signed certificate.

A request goes received → executing → completed, or to blocked (a legal hold stands on the
subject or a guest linked to them; lifting the hold resumes it) or failed (the erasure raised).
It is executed at once, in the request that creates it (an erasure takes tens of milliseconds);
one that a crash left in received or executing is taken up again by `resume_stale`, which the
server runs at start-up and then every `RESUME_INTERVAL`. One request per subject stands at a
time: asking again answers the standing (or completed) one.

The table holds no personal data in clear: the officer's reason and ticket reference and the
customer's device name are sealed with the system key `erasure-requests`, which no erasure
destroys (a request is evidence that outlives its subject).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from uuid import UUID, uuid4

import asyncpg
import msgspec

from aggregates.errors import DomainError, InvalidValue, NotFound
from continuity import cursors
from continuity.db import DATABASE_ERRORS, Queryable
from continuity.erasure import shred_subject
from continuity.identifiers import Identifiers, Kind
from continuity.legal_holds import LegalHolds, lock_subject, subject_known
from continuity.store import EventStore
from privacy.certificates import CERTIFICATE_KEY, SignedCertificate, sign
from privacy.cipher import seal, unseal
from privacy.vault import KeyVault

REQUESTS_KEY = "erasure-requests"
MAX_REASON = 500
MAX_REFERENCE = 100
MAX_PAGE = 100
STALE_AFTER = timedelta(seconds=30)
"""A request in received or executing this long was left by a crash: `resume_stale` takes it
up. (An erasure waits at most `ACK_TIMEOUT`, 5 s, for the processes' acknowledgements.)"""
RESUME_INTERVAL = 60.0
"""Seconds between two looks for requests left unfinished."""
OPERATOR_MUST = (
    "run `continuity erasures reapply` after any restore of a backup taken before {completed_at}"
)
"""What the operator must keep true for the erasure to hold: a certificate states it."""

State = Literal["received", "executing", "completed", "blocked", "failed"]
RequesterRole = Literal["compliance", "customer"]
log = logging.getLogger("continuity.erasure")


class NotCompleted(DomainError):
    """The request has no certificate yet: it is not completed."""


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asked: a compliance officer (their id), or the customer (their id and device)."""

    role: RequesterRole
    id: UUID
    device_id: UUID | None = None
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Whom to erase: by subject id, or by an email address or phone number."""

    subject_id: UUID | None = None
    email: str | None = None
    phone: str | None = None


class ErasureRequest(msgspec.Struct, frozen=True, kw_only=True):
    request_id: UUID
    subject_id: UUID
    state: State
    requester: Requester
    reason: str | None
    reference: str | None
    hold_reason: str | None
    """While blocked: the reason of the hold that blocks it."""
    failure: str | None
    attempts: int
    received_at: datetime
    executing_at: datetime | None
    blocked_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None


class ErasureCertificate(msgspec.Struct, frozen=True):
    """What is signed for a completed request: the erasure's own certificate (`erasure`, a
    `ShredCertificate`), the request and its times, and what the operator must keep true."""

    request_id: UUID
    subject_id: UUID
    requested_by: RequesterRole
    requested_at: datetime
    executing_at: datetime
    completed_at: datetime
    erasure: dict[str, Any]
    operator_must: str


class RequestPage(msgspec.Struct, frozen=True):
    requests: list[ErasureRequest]
    next_cursor: str | None


def _aad(request_id: UUID, what: str) -> bytes:
    return b"\x00".join((b"continuity-erasure-request-v1", request_id.bytes, what.encode()))


def _bounded(value: str | None, limit: int, field: str) -> str | None:
    if value is not None and len(value) > limit:
        raise InvalidValue(f"{field} is at most {limit} characters", field)
    return value


class ErasureRequests:
    def __init__(
        self,
        store: EventStore,
        vault: KeyVault,
        identifiers: Identifiers,
        holds: LegalHolds,
        journal_file: Path | None = None,
    ) -> None:
        self.journal_file = journal_file
        """Where erasures are journaled after they commit (`continuity.erasure_journal`)."""
        self.store = store
        self.pool: asyncpg.Pool = store.pool
        self.vault = vault
        self.identifiers = identifiers
        self.holds = holds

    async def create(
        self,
        target: Target,
        requester: Requester,
        reason: str | None = None,
        reference: str | None = None,
        *,
        must_exist: bool = True,
    ) -> tuple[ErasureRequest, bool]:
        """The subject's erasure request, executed, and whether it is new: a subject's standing
        or completed request is answered as it is. NotFound (naming the field) for an unknown
        subject or identifier (unless not `must_exist`: a customer's own request)."""
        _bounded(reason, MAX_REASON, "reason")
        _bounded(reference, MAX_REFERENCE, "reference")
        found = await self._subject_of(target, must_exist)
        if isinstance(found, ErasureRequest):
            return found, False
        request_id = uuid4()
        key = await self.vault.system_key(REQUESTS_KEY)

        def sealed(value: str | None, what: str) -> bytes | None:
            return None if value is None else seal(key, value.encode(), _aad(request_id, what))

        for _ in range(3):  # a standing request that fails meanwhile lets a new one in
            created = await self.pool.fetchval(
                "INSERT INTO erasure_requests (request_id, subject_id, state, requested_role,"
                " requested_by, device_id, key_version, device, reason, reference)"
                " VALUES ($1, $2, 'received', $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (subject_id) WHERE state <> 'failed' DO NOTHING"
                " RETURNING request_id",
                request_id,
                found,
                requester.role,
                requester.id,
                requester.device_id,
                key.version,
                sealed(requester.device, "device"),
                sealed(reason, "reason"),
                sealed(reference, "reference"),
            )
            if created is not None:
                return await self.execute(request_id), True
            standing = await self.pool.fetchrow(
                "SELECT * FROM erasure_requests WHERE subject_id = $1 AND state <> 'failed'",
                found,
            )
            if standing is not None:
                return await self._open(standing), False
        raise RuntimeError("the subject's erasure requests kept changing")  # pragma: no cover

    async def _subject_of(self, target: Target, must_exist: bool) -> UUID | ErasureRequest:
        """The subject to erase, or the request that erased the one an identifier led to."""
        given = [n for n in ("subject_id", "email", "phone") if getattr(target, n) is not None]
        if len(given) != 1:
            field = given[1] if given else "subject_id"
            raise InvalidValue("give exactly one of subject_id, email or phone", field)
        if target.subject_id is not None:
            if must_exist and not await subject_known(self.pool, target.subject_id):
                raise NotFound("no customer with this subject_id", "subject_id")
            return target.subject_id
        kind: Kind = "email" if target.email is not None else "phone"
        value = target.email if target.email is not None else target.phone
        assert value is not None
        try:
            digests = await self.identifiers.digests(kind, value)
        except InvalidValue as exc:
            raise InvalidValue(str(exc), kind) from None
        subject = await self.identifiers.find(kind, value)
        if subject is not None:
            return subject
        earlier = await self.pool.fetchrow(
            "SELECT r.* FROM erasure_request_identifiers i JOIN erasure_requests r USING"
            " (request_id) WHERE i.digest = ANY($1::bytea[]) AND r.state <> 'failed'"
            " ORDER BY r.received_at DESC LIMIT 1",
            digests,
        )
        if earlier is None:
            raise NotFound(f"no customer with this {kind}", kind)
        return await self._open(earlier)

    async def execute(self, request_id: UUID) -> ErasureRequest:
        """Carry the request out, unless a hold blocks it, it is done, or another process is
        executing it (since less than STALE_AFTER); its state after."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT subject_id, state, executing_at < now() - $2::interval AS stale"
                " FROM erasure_requests WHERE request_id = $1 FOR UPDATE",
                request_id,
                STALE_AFTER,
            )
            if row is None:
                raise NotFound("no erasure request with this id", "request_id")
            subject_id: UUID = row["subject_id"]
            state: State = row["state"]
            if state not in ("received", "blocked") and not (state == "executing" and row["stale"]):
                return await self._read(conn, request_id)
            subjects = [subject_id, *await self._linked(conn, subject_id)]
            await lock_subject(conn, subjects)
            if await self.holds.standing_among(conn, subjects) is not None:
                await conn.execute(
                    "UPDATE erasure_requests SET state = 'blocked',"
                    " blocked_at = coalesce(blocked_at, now()) WHERE request_id = $1",
                    request_id,
                )
                return await self._read(conn, request_id)
            await conn.execute(
                "UPDATE erasure_requests SET state = 'executing', executing_at = now(),"
                " attempts = attempts + 1 WHERE request_id = $1",
                request_id,
            )
            await conn.execute(
                "INSERT INTO erasure_request_identifiers (digest, request_id)"
                " SELECT digest, $2 FROM identifiers WHERE subject_id = ANY($1::uuid[])"
                " ON CONFLICT DO NOTHING",
                subjects,
                request_id,
            )
        try:
            shredded = await shred_subject(
                self.store, self.vault, subject_id, journal_file=self.journal_file
            )
        except Exception as exc:  # any cause: the request says it failed, the log says why
            log.exception("erasure request %s failed", request_id)
            await self.pool.execute(
                "UPDATE erasure_requests SET state = 'failed', failed_at = now(), failure = $2"
                " WHERE request_id = $1 AND state = 'executing'",
                request_id,
                f"the erasure raised {type(exc).__name__}; the server's log has the details",
            )
            return await self.get(request_id)
        signer = await self.vault.signer(CERTIFICATE_KEY)
        async with self.pool.acquire() as conn, conn.transaction():
            times = await conn.fetchrow(
                "UPDATE erasure_requests SET state = 'completed', completed_at = now()"
                " WHERE request_id = $1 AND state = 'executing'"
                " RETURNING requested_role, received_at, executing_at, completed_at",
                request_id,
            )
            if times is not None:
                certificate = ErasureCertificate(
                    request_id=request_id,
                    subject_id=subject_id,
                    requested_by=times["requested_role"],
                    requested_at=times["received_at"],
                    executing_at=times["executing_at"],
                    completed_at=times["completed_at"],
                    erasure=msgspec.to_builtins(shredded),
                    operator_must=OPERATOR_MUST.format(
                        completed_at=msgspec.to_builtins(times["completed_at"])
                    ),
                )
                await conn.execute(
                    "UPDATE erasure_requests SET certificate = $2 WHERE request_id = $1",
                    request_id,
                    msgspec.json.encode(sign(signer, certificate)).decode(),
                )
            return await self._read(conn, request_id)

    async def _linked(self, conn: Queryable, subject_id: UUID) -> list[UUID]:
        """The guests linked to the subject, whom the erasure erases too."""
        rows = await conn.fetch("SELECT subject_id FROM guests WHERE linked_to = $1", subject_id)
        return [row["subject_id"] for row in rows]

    async def resume(self, subject_id: UUID) -> list[ErasureRequest]:
        """Execute the subject's blocked requests (and those of the customer a guest is linked
        to): a hold on them was lifted. The requests, in their state after."""
        rows = await self.pool.fetch(
            "SELECT request_id FROM erasure_requests WHERE state = 'blocked' AND (subject_id = $1"
            " OR subject_id = (SELECT linked_to FROM guests WHERE subject_id = $1))"
            " ORDER BY received_at",
            subject_id,
        )
        return [await self.execute(row["request_id"]) for row in rows]

    async def resume_stale(self) -> int:
        """Take up again the requests a crash left in received or executing; how many."""
        rows = await self.pool.fetch(
            "SELECT request_id FROM erasure_requests"
            " WHERE (state = 'received' AND received_at < now() - $1::interval)"
            " OR (state = 'executing' AND executing_at < now() - $1::interval)"
            " ORDER BY received_at",
            STALE_AFTER,
        )
        for row in rows:
            await self.execute(row["request_id"])
        return len(rows)

    async def keep_resuming(self, stop: asyncio.Event) -> None:
        """`resume_stale` now and every RESUME_INTERVAL until `stop` is set."""
        while not stop.is_set():
            try:
                resumed = await self.resume_stale()
                if resumed:
                    log.warning("took up %d unfinished erasure requests", resumed)
            except DATABASE_ERRORS as exc:
                log.warning(
                    "the look for unfinished erasure requests failed (%s)", type(exc).__name__
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESUME_INTERVAL)

    async def get(self, request_id: UUID) -> ErasureRequest:
        return await self._read(self.pool, request_id)

    async def _read(self, conn: Queryable, request_id: UUID) -> ErasureRequest:
        row = await conn.fetchrow(
            "SELECT * FROM erasure_requests WHERE request_id = $1", request_id
        )
        if row is None:
            raise NotFound("no erasure request with this id", "request_id")
        return await self._open(row, conn)

    async def certificate(self, request_id: UUID) -> SignedCertificate:
        """The signed certificate of a completed request; NotCompleted before."""
        row = await self.pool.fetchrow(
            "SELECT state, certificate FROM erasure_requests WHERE request_id = $1", request_id
        )
        if row is None:
            raise NotFound("no erasure request with this id", "request_id")
        if row["certificate"] is None:
            raise NotCompleted(f"the erasure request is {row['state']}, not completed")
        return msgspec.json.decode(row["certificate"], type=SignedCertificate)

    async def page(
        self,
        state: State | None = None,
        *,
        subject_id: UUID | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> RequestPage:
        """Requests newest first (only `subject_id`'s, if given), after `cursor` (the previous
        page's `next_cursor`)."""
        conditions: list[str] = []
        args: list[object] = []
        if state is not None:
            args.append(state)
            conditions.append(f"state = ${len(args)}")
        if subject_id is not None:
            args.append(subject_id)
            conditions.append(f"subject_id = ${len(args)}")
        if cursor is not None:
            at, request_id = cursors.decode(cursor, tuple[datetime, UUID])
            args.extend([at, request_id])
            conditions.append(f"(received_at, request_id) < (${len(args) - 1}, ${len(args)})")
        size = min(max(limit, 1), MAX_PAGE)
        args.append(size + 1)  # one more than asked: whether there is a next page
        rows = await self.pool.fetch(
            "SELECT * FROM erasure_requests"
            + (" WHERE " + " AND ".join(conditions) if conditions else "")
            + f" ORDER BY received_at DESC, request_id DESC LIMIT ${len(args)}",
            *args,
        )
        found = [await self._open(row) for row in rows[:size]]
        last = found[-1] if len(rows) > size else None
        next_cursor = None if last is None else cursors.encode([last.received_at, last.request_id])
        return RequestPage(found, next_cursor)

    async def _open(self, row: asyncpg.Record, conn: Queryable | None = None) -> ErasureRequest:
        key = await self.vault.system_key(REQUESTS_KEY, row["key_version"])
        request_id: UUID = row["request_id"]

        def opened(what: str) -> str | None:
            sealed = row[what]
            return None if sealed is None else unseal(key, sealed, _aad(request_id, what)).decode()

        hold_reason = None
        if row["state"] == "blocked":
            hold = await self.holds.blocking(row["subject_id"], conn)
            hold_reason = None if hold is None else hold.reason
        return ErasureRequest(
            request_id=request_id,
            subject_id=row["subject_id"],
            state=row["state"],
            requester=Requester(
                row["requested_role"], row["requested_by"], row["device_id"], opened("device")
            ),
            reason=opened("reason"),
            reference=opened("reference"),
            hold_reason=hold_reason,
            failure=row["failure"],
            attempts=row["attempts"],
            received_at=row["received_at"],
            executing_at=row["executing_at"],
            blocked_at=row["blocked_at"],
            completed_at=row["completed_at"],
            failed_at=row["failed_at"],
        )
