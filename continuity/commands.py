"""How a command on one of a subject's aggregates runs: one at a time per subject in this
process, tried again on the fresh state when another process got in between, and a retried
request (same `Idempotency-Key`) answered from what the first one recorded.

Applications and conversations share it; the cart has a fused single-query path of its own.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from uuid import UUID

import asyncpg

from continuity.errors import ConcurrencyConflict, EventIdReused, ViewMoved
from continuity.mapper import request_digest
from continuity.repository import IdempotencyKey
from continuity.turns import Turns
from privacy.vault import KeyVault

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
        retryable: tuple[type[Exception], ...] = (ConcurrencyConflict, ViewMoved, *retry_on)
        for n in range(ATTEMPTS):
            try:
                async with self.turns.of(subject_id):
                    return await attempt()
            except retryable:
                if n == ATTEMPTS - 1:
                    raise
            await asyncio.sleep(random.uniform(0, BACKOFF * 2**n))  # noqa: S311
        raise AssertionError("unreachable")

    async def recorded(self, request: IdempotencyKey, fingerprint: bytes) -> bool:
        """Whether the request was recorded already (a retry); EventIdReused if its key
        recorded another request."""
        found = (await self.recorded_at(request.subject_id, [(request, fingerprint)]))[0]
        if isinstance(found, EventIdReused):
            raise found
        return found is not None

    async def recorded_at(
        self, subject_id: UUID, requests: Sequence[tuple[IdempotencyKey, bytes]]
    ) -> list[int | EventIdReused | None]:
        """For each of the subject's requests (its key and fingerprint), in one query: the
        position of its first event if it was recorded already (a retry), None if it was not,
        and EventIdReused if its key recorded another request."""
        rows = await self.pool.fetch(
            "SELECT event_id, position, digest FROM events WHERE event_id = ANY($1::uuid[])",
            [request.first for request, _ in requests],
        )
        if not rows:
            return [None] * len(requests)
        found = {row["event_id"]: row for row in rows}
        key = await self.vault.key_for_writing(subject_id)
        answers: list[int | EventIdReused | None] = []
        for request, fingerprint in requests:
            row = found.get(request.first)
            if row is None:
                answers.append(None)
            elif row["digest"] != request_digest(key, fingerprint, 0):
                answers.append(EventIdReused(request.key))
            else:
                answers.append(row["position"])
        return answers
