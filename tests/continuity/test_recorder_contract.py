"""eventsourcing's own recorder test cases, run against our EventStore.

`eventsourcing.tests.persistence` holds the contract a recorder must meet (ordering, atomicity,
conflicts, tracking, subscriptions). Its cases are synchronous `unittest.TestCase`s, so the
store is driven through `StoreRecorder`: a sync adapter that runs the store's coroutines on an
event loop in a daemon thread. Each test gets a fresh schema, so notification ids start at 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import unittest
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Self, TypeVar
from uuid import UUID, uuid4

import asyncpg
import pytest
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
)
from eventsourcing.tests import persistence as contract

from continuity.db import Conn, close_pool, create_pool, migrate
from continuity.errors import ConcurrencyConflict, DuplicateEvent, EventIdReused
from continuity.store import EventStore, NewEvent, Project, RecordedEvent, TrackingConflict
from continuity.store import Subscription as Follower

T = TypeVar("T")

# The errors eventsourcing calls IntegrityError: a record that conflicts with one already there.
CONFLICTS = (ConcurrencyConflict, DuplicateEvent, EventIdReused, TrackingConflict)

DATABASE_URL: str | None = None


@pytest.fixture(autouse=True)
def _database_url(database_url: str) -> None:
    """Hand the session's database to the unittest cases, which cannot take fixtures."""
    global DATABASE_URL
    DATABASE_URL = database_url


class LoopThread:
    """An asyncio event loop running in a daemon thread, for calling async code from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="recorder-loop", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def call_soon(self, callback: Callable[[], object]) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback)

    def stop(self) -> None:
        self.call_soon(self.loop.stop)
        self._thread.join()


def _uuid(originator_id: UUID | str) -> UUID:
    return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)


def _new_event(event: StoredEvent) -> NewEvent:
    stream_id = _uuid(event.originator_id)
    return NewEvent(
        stream_id=stream_id,
        version=event.originator_version,
        # Random, never derived from the stream and version: re-inserting a recorded
        # (originator, version) must be a conflict, not an idempotent retry.
        event_id=uuid4(),
        subject_id=stream_id,
        topic=event.topic,
        channel="system",
        recorded_at=datetime.now(UTC),
        key_version=0,
        digest=b"",
        payload=event.state,
    )


def _stored_event(event: RecordedEvent) -> StoredEvent:
    return StoredEvent(
        originator_id=event.stream_id,
        originator_version=event.version,
        topic=event.topic,
        state=event.payload,
    )


def _notification(event: RecordedEvent) -> Notification:
    return Notification(
        id=event.position,
        originator_id=event.stream_id,
        originator_version=event.version,
        topic=event.topic,
        state=event.payload,
    )


def _track(store: EventStore, tracking: Tracking) -> Project:
    async def project(conn: Conn, positions: list[int]) -> None:
        await store.insert_tracking(tracking.application_name, tracking.notification_id, conn)

    return project


class StoreRecorder(ProcessRecorder):
    """eventsourcing's recorder interface over the async EventStore."""

    def __init__(self, store: EventStore, loop: LoopThread, database_url: str) -> None:
        self.store = store
        self.loop = loop
        self.database_url = database_url

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self.loop.run(coro)
        except CONFLICTS as exc:
            raise IntegrityError(str(exc)) from exc

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        tracking: Tracking | None = None,
        **kwargs: Any,
    ) -> list[int]:
        events = [_new_event(event) for event in stored_events]
        if not events:
            if tracking is not None:
                self.insert_tracking(tracking)
            return []
        project = None if tracking is None else _track(self.store, tracking)
        return self._run(self.store.append(events, project=project))

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        events = self._run(
            self.store.select_events(_uuid(originator_id), gt=gt, lte=lte, desc=desc, limit=limit)
        )
        return [_stored_event(event) for event in events]

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        events = self._run(
            self.store.select_notifications(
                start, limit, stop, topics, inclusive_of_start=inclusive_of_start
            )
        )
        return [_notification(event) for event in events]

    def max_notification_id(self) -> int | None:
        return self._run(self.store.max_notification_id())

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> StoreSubscription:
        return StoreSubscription(self, gt, topics)

    def insert_tracking(self, tracking: Tracking) -> None:
        self._run(self.store.insert_tracking(tracking.application_name, tracking.notification_id))

    def max_tracking_id(self, application_name: str) -> int | None:
        return self._run(self.store.max_tracking_id(application_name))

    def close(self) -> None:
        self.loop.run(_close_store(self.store, self.database_url))


class StoreSubscription(Subscription[StoreRecorder]):
    """eventsourcing's blocking Subscription over our async one: each `next()` pulls one event
    across the thread boundary; `stop()` wakes a pull in progress from any thread."""

    def __init__(
        self, recorder: StoreRecorder, gt: int | None = None, topics: Sequence[str] = ()
    ) -> None:
        super().__init__(recorder, gt, topics)
        self._loop = recorder.loop
        self._follower: Follower = recorder.store.subscribe(gt, topics)
        self._events: AsyncIterator[RecordedEvent] | None = None
        self._pending: Future[RecordedEvent | None] | None = None

    def __enter__(self) -> Self:
        super().__enter__()
        if not self._has_been_stopped:
            self._loop.run(self._follower.start())
        return self

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._loop.run(self._close())

    def stop(self) -> None:
        super().stop()
        self._loop.call_soon(self._follower.stop)

    def __next__(self) -> Notification:
        if self._has_been_stopped:
            raise StopIteration
        self._pending = self._loop.submit(self._pull())
        event = self._pending.result()
        self._pending = None
        if event is None or self._has_been_stopped:
            raise StopIteration
        return _notification(event)

    async def _pull(self) -> RecordedEvent | None:
        if self._events is None:
            self._events = aiter(self._follower)
        try:
            return await anext(self._events)
        except StopAsyncIteration:
            return None

    async def _close(self) -> None:
        pending = self._pending
        if pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(pending)
        events, self._events = self._events, None
        if isinstance(events, AsyncGenerator):
            await events.aclose()
        await self._follower.close()


async def _open_store(database_url: str, schema: str) -> EventStore:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, schema)
    finally:
        await conn.close()
    pool = await create_pool(database_url, schema, min_size=1, max_size=20)
    return EventStore(pool, schema)


async def _close_store(store: EventStore, database_url: str) -> None:
    try:
        await store.aclose()
        await close_pool(store.pool)
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA "{store.schema}" CASCADE')
        finally:
            await conn.close()


def open_recorder(case: unittest.TestCase) -> StoreRecorder:
    """A recorder on a fresh schema, its loop, pool and schema torn down after `case`."""
    assert DATABASE_URL is not None, "the _database_url fixture did not run"
    loop = LoopThread()
    case.addCleanup(loop.stop)
    store = loop.run(_open_store(DATABASE_URL, f"test_{uuid4().hex[:16]}"))
    recorder = StoreRecorder(store, loop, DATABASE_URL)
    case.addCleanup(recorder.close)
    return recorder


class TestApplicationRecorder(contract.ApplicationRecorderTestCase[StoreRecorder]):
    def create_recorder(self) -> StoreRecorder:
        return open_recorder(self)

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestTrackingRecorder(contract.TrackingRecorderTestCase):
    def create_recorder(self) -> StoreRecorder:
        return open_recorder(self)


class TestProcessRecorder(contract.ProcessRecorderTestCase):
    def create_recorder(self) -> StoreRecorder:
        return open_recorder(self)


class TestNonInterleavingNotificationIds(contract.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> StoreRecorder:
        return open_recorder(self)
