"""The console's event streams: `changed`, once what a page shows has caught up with an event.

A page does not render events itself: it fetches its fragment again (htmx, `sse:changed`).
The queue and timeline are asynchronous projections, so a fragment fetched the moment an event
is recorded could miss it; the stream therefore waits (briefly) until the projections the page
reads have applied the event before it says `changed`. Each message carries the event's
position as its `id`: a browser that reconnects sends it back, and the stream then says
`changed` at once, since something may have happened while it was away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from uuid import UUID

from litestar.response import ServerSentEventMessage

from api.live_events import RETRY_MS
from continuity.live import StreamEnded
from continuity.projection import Projection
from continuity.projection_status import reached
from continuity.runtime import Runtime

CATCH_UP_WAIT = 5.0
"""Seconds to wait for the projections before saying `changed` anyway."""
_POLL = 0.05


async def _caught_up(runtime: Runtime, projections: Iterable[Projection], position: int) -> None:
    deadline = asyncio.get_running_loop().time() + CATCH_UP_WAIT
    waiting = list(projections)
    while waiting and asyncio.get_running_loop().time() < deadline:
        async with runtime.pool.acquire() as conn:
            waiting = [p for p in waiting if not await reached(conn, p, position)]
        if waiting:
            await asyncio.sleep(_POLL)


class CatchUp:
    """Waits until projections have applied a position: one poll for all the streams waiting
    for the same projections and position (every agent on the queue page hears the same event
    at once), not one each."""

    def __init__(self) -> None:
        self.pending: dict[tuple[tuple[str, ...], int], asyncio.Task[None]] = {}

    async def wait(self, runtime: Runtime, names: tuple[str, ...], position: int) -> None:
        key = (names, position)
        task = self.pending.get(key)
        if task is None:
            projections = [runtime.projections.get(name) for name in names]
            task = asyncio.create_task(_caught_up(runtime, projections, position))
            self.pending[key] = task
            task.add_done_callback(lambda _: self.pending.pop(key, None))
        await asyncio.shield(task)  # a stream that leaves does not cancel the others' wait


def _changed(position: int) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=str(position), event="changed", id=position)


async def changes(
    runtime: Runtime,
    catch_up: CatchUp,
    subject_id: UUID | None,
    topics: Iterable[str],
    projections: tuple[str, ...],
    *,
    resumed: bool,
) -> AsyncIterator[ServerSentEventMessage]:
    """`changed` after each event of `subject_id` (or of `topics`, for everyone), once the named
    projections have applied it; a keep-alive comment while nothing happens."""
    stream = runtime.live.subscribe(subject_id, topics)
    try:
        yield ServerSentEventMessage(
            data=None, comment="connected", id=stream.position, retry=RETRY_MS
        )
        if resumed:
            yield _changed(stream.position)
        while True:
            envelope = await stream.next(runtime.settings.sse_keepalive)
            if envelope is None:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                continue
            await catch_up.wait(runtime, projections, envelope.position)
            yield _changed(envelope.position)
    except StreamEnded:
        yield ServerSentEventMessage(data=None, comment="ended: reconnect", retry=RETRY_MS)
    finally:
        stream.close()
