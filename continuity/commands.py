"""How a command on one of a subject's aggregates runs: one at a time per subject in this
process, tried again on the fresh state when another process got in between, and a retried
request (same `Idempotency-Key`) answered from what the first one recorded.

Applications and conversations share it; the cart has a fused single-query path of its own.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
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

    async def run(self, subject_id: UUID, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` in the subject's turn; again (after a random, growing pause) when a
        concurrent append or a moved view row refused it, up to ATTEMPTS times."""
        return await self.run_for([subject_id], attempt)

    async def run_for(self, subject_ids: list[UUID], attempt: Callable[[], Awaitable[T]]) -> T:
        """`run` of a command on several subjects' aggregates, in the turn of each of them."""
        for n in range(ATTEMPTS):
            try:
                async with self.turns.of_all(subject_ids):
                    return await attempt()
            except (ConcurrencyConflict, ViewMoved):
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
        if digest is None:
            return False
        key = await self.vault.key_for_writing(request.subject_id)
        if digest != request_digest(key, fingerprint, 0):
            raise EventIdReused(request.key)
        return True
