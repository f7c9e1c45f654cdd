"""How a command on one of a subject's aggregates runs: one at a time per subject in this
process, tried again on the fresh state when another process got in between, and a retried
request (same `Idempotency-Key`) answered from what the first one recorded.

Applications and conversations share it. The cart and the activity, which stand their aggregate
up from the session view, read everything a command needs in one query (`SessionLoad`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from uuid import UUID

import asyncpg
import msgspec

from continuity.errors import ConcurrencyConflict, EventIdReused, ViewMoved
from continuity.mapper import request_digest
from continuity.repository import IdempotencyKey
from continuity.subject_views import Read, SealedViews
from continuity.turns import Turns
from privacy.vault import KeyVault
from projections.session import SessionView

T = TypeVar("T")

ATTEMPTS = 5
"""Times a command is tried when another process's append or a moved view row gets between."""
BACKOFF = 0.002
"""Seconds: the most the first retry waits (doubling), so racing processes fall out of step."""


class Commands:
    def __init__(self, pool: asyncpg.Pool, vault: KeyVault, turns: Turns) -> None:
        self.pool = pool
        self.vault = vault
        self.turns = turns

    async def run(
        self,
        subject_id: UUID,
        attempt: Callable[[], Awaitable[T]],
        retry_on: tuple[type[Exception], ...] = (),
    ) -> T:
        """`attempt()` in the subject's turn; again (after a random, growing pause) when a
        concurrent append or a moved view row (or one of `retry_on`) refused it, up to
        ATTEMPTS times."""
        return await self.run_for([subject_id], attempt, retry_on)

    async def run_for(
        self,
        subject_ids: list[UUID],
        attempt: Callable[[], Awaitable[T]],
        retry_on: tuple[type[Exception], ...] = (),
    ) -> T:
        """`run` of a command on several subjects' aggregates, in the turn of each of them."""
        retryable: tuple[type[Exception], ...] = (ConcurrencyConflict, ViewMoved, *retry_on)
        for n in range(ATTEMPTS):
            try:
                async with self.turns.of_all(subject_ids):
                    return await attempt()
            except retryable:
                if n == ATTEMPTS - 1:
                    raise
            await asyncio.sleep(random.uniform(0, BACKOFF * 2**n))  # noqa: S311
        raise AssertionError("unreachable")

    async def recorded(self, request: IdempotencyKey, fingerprint: bytes) -> bool:
        """Whether the request was recorded already (a retry); EventIdReused if its key
        recorded another request."""
        digest = await self.pool.fetchval(
            "SELECT digest FROM events WHERE event_id = $1", request.first
        )
        return await is_retry(self.vault, request, fingerprint, digest)

    async def recorded_at(
        self, requests: Sequence[tuple[IdempotencyKey, bytes]]
    ) -> list[int | EventIdReused | None]:
        """For each request (its key and fingerprint), in one query: the position of its first
        event if it was recorded already (a retry), None if it was not, and EventIdReused if
        its key recorded another request."""
        rows = await self.pool.fetch(
            "SELECT event_id, position, digest FROM events WHERE event_id = ANY($1::uuid[])",
            [request.first for request, _ in requests],
        )
        found = {row["event_id"]: row for row in rows}
        answers: list[int | EventIdReused | None] = []
        for request, fingerprint in requests:
            row = found.get(request.first)
            digest = None if row is None else row["digest"]
            try:
                retry = await is_retry(self.vault, request, fingerprint, digest)
            except EventIdReused as reused:
                answers.append(reused)
                continue
            answers.append(row["position"] if retry and row is not None else None)
        return answers


async def is_retry(
    vault: KeyVault, request: IdempotencyKey, fingerprint: bytes, digest: bytes | None
) -> bool:
    """Whether `digest` (recorded under the request's first event id, if any) says the request
    was recorded already; EventIdReused if its key recorded another request."""
    if digest is None:
        return False
    key = await vault.key_for_writing(request.subject_id)
    if digest == request_digest(key, fingerprint, 0):
        return True
    # Recorded under an earlier period's key (keys roll over), or another request.
    for key in await vault.keys_of(request.subject_id):
        if digest == request_digest(key, fingerprint, 0):
            return True
    raise EventIdReused(request.key)


class Loaded(msgspec.Struct, frozen=True, gc=False):
    """What a command on the session view's aggregates needs, from one query: the digest and
    position recorded under the request's first event id (a retry), whether the subject is
    erased, and their session row."""

    digest: bytes | None
    position: int | None
    erased: bool
    session: Read[SessionView]

    @property
    def view(self) -> SessionView:
        folded = self.session.folded
        return folded.state if folded is not None else SessionView()

    def version_of(self, stream_id: UUID) -> int | None:
        """The version of `stream_id` the session row has folded (None: none of it)."""
        return self.session.version_of(stream_id)


class SessionLoad:
    """Reads a `Loaded` in one round trip."""

    def __init__(self, pool: asyncpg.Pool, sessions: SealedViews[SessionView]) -> None:
        self.pool = pool
        self.sessions = sessions
        self._sql = (
            "SELECT e.digest, e.position,"
            " EXISTS (SELECT FROM erased_subjects WHERE subject_id = $1) AS erased,"
            " v.key_version, v.body, v.revision FROM (SELECT) AS one"
            " LEFT JOIN events AS e ON e.event_id = $2"
            f" LEFT JOIN (SELECT {sessions.select_row} WHERE subject_id = $1) AS v ON true"
        )

    async def __call__(self, request: IdempotencyKey) -> Loaded:
        row = await self.pool.fetchrow(self._sql, request.subject_id, request.first)
        assert row is not None  # one row, always: the rest is left-joined
        session: Read[SessionView] = Read(None, None)
        if row["body"] is not None:
            session = await self.sessions.opened(
                request.subject_id, row["key_version"], row["body"], row["revision"]
            )
        return Loaded(row["digest"], row["position"], row["erased"], session)
