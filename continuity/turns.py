"""One command per subject at a time in this process.

Two requests of one customer (a double tap, a phone and a laptop) would otherwise read the same
state and race to append; the loser would be retried, or answered 409. In turn, the second reads
what the first wrote and both succeed. Across processes, the append's expected version still
decides, and the loser retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from uuid import UUID


class Turns:
    def __init__(self) -> None:
        self._held: dict[UUID, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def of(self, subject_id: UUID) -> AsyncIterator[None]:
        lock, users = self._held.get(subject_id) or (asyncio.Lock(), 0)
        self._held[subject_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[subject_id]
            if users == 1:
                del self._held[subject_id]
            else:
                self._held[subject_id] = (lock, users - 1)

    @contextlib.asynccontextmanager
    async def of_all(self, subject_ids: Iterable[UUID]) -> AsyncIterator[None]:
        """The turns of several subjects, taken in one fixed order (by id), so two commands
        that both need the same two subjects cannot each hold one and wait for the other."""
        async with contextlib.AsyncExitStack() as stack:
            for subject_id in sorted(set(subject_ids)):
                await stack.enter_async_context(self.of(subject_id))
            yield

    def __len__(self) -> int:
        """Subjects with a command running or waiting."""
        return len(self._held)
