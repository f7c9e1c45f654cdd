"""Live updates for one process: one LISTEN connection and one reader fan out to every open stream.

A stream (an SSE client, say) subscribes to one subject's events, to every event of some
topics, or both. However many streams are open, the process holds one dedicated connection
that LISTENs on the store's channel, and one reader task follows the log: woken by the store's
NOTIFY (debounced, sent after commits by whichever process appended), and polling as well, at
`poll_interval` and every `in_flight_poll` while newer events wait behind a transaction still
in flight, so a lost notification or a lost connection only delays it. It reads settled events
only (`EventStore.select_notifications_page`), in commit order, decrypts those some stream
wants, and hands each to the streams that want it.

Each stream has a bounded queue. A stream whose consumer falls `queue_size` events behind is
marked as behind and its queue dropped; it then reads what it missed from the database itself
(short pool acquisitions, a page at a time) and goes on live. The same catch-up serves a
client that resumes from a position: a stream starts live at the reader's position at the
moment it subscribes, reads the range before that from the database, and skips any live event
at or below what it already delivered. Nothing is lost or delivered twice, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar
from uuid import UUID

import asyncpg

from continuity.db import DATABASE_ERRORS
from continuity.errors import IntegrityViolation
from continuity.mapper import EventMapper
from continuity.store import EventStore, RecordedEvent
from projections.envelope import Envelope

log = logging.getLogger("continuity.live")

Connect = Callable[[], Awaitable[asyncpg.Connection]]
"""Opens the feed's own LISTEN connection (outside the pool, so it never takes a pool slot)."""
ObserveStreams = Callable[[int], None]
"""Told the number of open streams whenever it changes (`Metrics.live_streams.set`)."""

QUEUE_SIZE = 1_000
"""Events a stream's queue holds before its consumer counts as behind and reads the database."""
PAGE_SIZE = 500
"""Events the reader takes from the log at once."""
CATCH_UP_PAGE = 200
"""Events a stream reads back from the database at once."""
POLL_INTERVAL = 1.0
"""Seconds between two reads of the log with no NOTIFY in between."""
IN_FLIGHT_POLL = 0.02
"""Seconds between reads while a newer event waits behind a transaction in flight."""
K = TypeVar("K")


class StreamEnded(Exception):
    """The stream is over: the feed stopped (the server is shutting down), its subject was
    erased, an event it wanted failed its integrity check, or the database could not be read
    for its catch-up. A client resumes from the last position it received."""


class LiveStream:
    """One subscriber: its filter, its bounded queue and where it is in the log.

    `position` is the last position delivered (or passed over: a catch-up that finds nothing
    more up to some position moves it there). Read with `next`; `close` (or `async with`)
    unsubscribes. Everything here runs on the feed's event loop: the reader hands events over
    synchronously, so no lock is needed.
    """

    def __init__(
        self,
        feed: LiveFeed,
        subject_id: UUID | None,
        topics: frozenset[str],
        start: int,
        after: int | None,
    ) -> None:
        self.feed = feed
        self.subject_id = subject_id
        self.topics = topics
        self.position = start if after is None else after
        self.closed = False
        self.overflows = 0
        """How often its queue overflowed (and it read the database instead)."""
        self._target = start if after is not None and after < start else 0
        """Read from the database up to here before going on live."""
        self._done_to = 0
        """Nothing more up to here: the position once the backlog is delivered."""
        self._backlog: deque[Envelope] = deque()
        self._live: deque[Envelope] = deque()
        self._behind = False
        self._ended: StreamEnded | None = None
        self._wake = asyncio.Event()

    def wants(self, topic: str) -> bool:
        return not self.topics or topic in self.topics

    async def __aenter__(self) -> LiveStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Unsubscribe (synchronous, so it needs no shield in a cancelled task's cleanup)."""
        if not self.closed:
            self.closed = True
            self._live.clear()
            self._backlog.clear()
            self.feed._forget(self)

    async def next(self, within: float | None = None) -> Envelope | None:
        """The next event in log order; None if none came `within` seconds (a keep-alive's
        turn). StreamEnded once the stream is over."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while True:
            self._wake.clear()
            if self._ended is not None:
                raise self._ended
            if self.closed:
                raise StreamEnded("the stream was closed")
            if self._backlog:
                envelope = self._backlog.popleft()
                self.position = envelope.position
                return envelope
            self.position = max(self.position, self._done_to)
            if self._behind:
                self._behind = False
                self._target = max(self._target, self.feed.position)
            if self._target > self.position:
                await self._read_back()
                continue
            while self._live:
                envelope = self._live.popleft()
                if envelope.position > self.position:
                    self.position = envelope.position
                    return envelope
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return None

    async def _read_back(self) -> None:
        """One page of what this stream missed, from the database."""
        target = self._target
        try:
            records = await self.feed._select(self, self.position, target, CATCH_UP_PAGE)
            envelopes = await self.feed.mapper.to_envelopes(records)
        except DATABASE_ERRORS as exc:
            raise StreamEnded(f"the log could not be read ({type(exc).__name__})") from None
        except IntegrityViolation as exc:
            log.error("live stream: %s", exc)
            raise StreamEnded("an event failed its integrity check") from None
        if self.closed:
            return
        self._backlog.extend(envelopes)
        if len(records) < CATCH_UP_PAGE:
            self._done_to = max(self._done_to, target)

    def _offer(self, envelope: Envelope) -> None:
        """Called by the reader, synchronously, in log order."""
        if self.closed or self._behind:
            return
        if len(self._live) >= self.feed.queue_size:
            self._behind = True  # the consumer reads the database from its position instead
            self.overflows += 1
            self._live.clear()
        else:
            self._live.append(envelope)
        self._wake.set()

    def _end(self, reason: str) -> None:
        if self._ended is None:
            self._ended = StreamEnded(reason)
        self._wake.set()


class LiveFeed:
    """The process's fan-out of new events to its open streams (see the module)."""

    def __init__(
        self,
        store: EventStore,
        mapper: EventMapper,
        connect: Connect,
        *,
        queue_size: int = QUEUE_SIZE,
        page_size: int = PAGE_SIZE,
        poll_interval: float = POLL_INTERVAL,
        in_flight_poll: float = IN_FLIGHT_POLL,
        liveness_interval: float = 10.0,
        probe_timeout: float = 5.0,
        retry_delay: float = 0.5,
        retry_max_delay: float = 2.0,
        observe: ObserveStreams | None = None,
    ) -> None:
        self.store = store
        self.mapper = mapper
        self.connect = connect
        self.queue_size = queue_size
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.in_flight_poll = in_flight_poll
        self.liveness_interval = liveness_interval
        self.probe_timeout = probe_timeout
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.observe = observe
        self.position = 0
        """Every settled event up to here has been handed to the streams that want it."""
        self._by_subject: dict[UUID, set[LiveStream]] = {}
        self._by_topic: dict[str, set[LiveStream]] = {}
        self._every: set[LiveStream] = set()
        self._count = 0
        self._wake = asyncio.Event()
        self._stopped = False
        self._listener: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def open_streams(self) -> int:
        return self._count

    @property
    def listening(self) -> bool:
        """Whether NOTIFYs reach the feed now (else it polls until the connection is back)."""
        return self._listener is not None and not self._lost.is_set()

    async def open(self) -> None:
        """Start at the settled head of the log, LISTEN, and start the reader."""
        if self._tasks:
            return
        self.position = await self.store.settled_head()
        await self._listen()
        self._tasks = [
            asyncio.create_task(self._follow(), name="continuity-live-reader"),
            asyncio.create_task(self._keep_listening(), name="continuity-live-listener"),
        ]

    def subscribe(
        self,
        subject_id: UUID | None = None,
        topics: Iterable[str] = (),
        *,
        after: int | None = None,
    ) -> LiveStream:
        """A stream of the events of `subject_id` (any subject if None) whose topic is one of
        `topics` (any topic if none), from now on; with `after`, from just after that position
        (what was missed is read from the database first). On a stopped feed the stream is
        over at once."""
        stream = LiveStream(self, subject_id, frozenset(topics), self.position, after)
        if self._stopped:
            stream._end("the server is shutting down")
            stream.closed = True
            return stream
        if subject_id is not None:
            self._by_subject.setdefault(subject_id, set()).add(stream)
        elif stream.topics:
            for topic in stream.topics:
                self._by_topic.setdefault(topic, set()).add(stream)
        else:
            self._every.add(stream)
        self._count += 1
        self._observe()
        return stream

    def _forget(self, stream: LiveStream) -> None:
        if stream.subject_id is not None:
            _discard(self._by_subject, stream.subject_id, stream)
        elif stream.topics:
            for topic in stream.topics:
                _discard(self._by_topic, topic, stream)
        else:
            self._every.discard(stream)
        self._count -= 1
        self._observe()

    def _observe(self) -> None:
        if self.observe is not None:
            self.observe(self._count)

    def stop(self) -> None:
        """End every open stream and refuse new ones (synchronous: a signal handler may call
        it through `loop.call_soon_threadsafe`)."""
        self._stopped = True
        for stream in self._streams():
            stream._end("the server is shutting down")
        self._wake.set()

    async def close(self) -> None:
        """`stop`, then stop the reader and give up the LISTEN connection."""
        self.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await asyncio.shield(self._drop_listener(gracefully=True))

    def _streams(self) -> list[LiveStream]:
        streams = set(self._every)
        for group in (*self._by_subject.values(), *self._by_topic.values()):
            streams |= group
        return list(streams)

    # -- reading the log ---------------------------------------------------------------------

    async def _follow(self) -> None:
        while not self._stopped:
            self._wake.clear()
            try:
                held_back = await self._step()
            except DATABASE_ERRORS as exc:
                log.warning("live feed: the log could not be read (%s)", type(exc).__name__)
                held_back = False
            except Exception:  # a bug must not end live updates for the whole process
                log.exception("live feed: reading the log failed")
                held_back = False
            if held_back is None:
                continue  # a full page: more is waiting
            timeout = self.in_flight_poll if held_back else self.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _step(self) -> bool | None:
        """Read and hand out one page. None if the page was full, else whether newer events
        wait behind a transaction in flight."""
        if not self._count:
            # Nobody listens: move to the settled head without reading the events. A stream
            # that subscribes meanwhile starts at the old position, so then read instead.
            head = await self.store.settled_head()
            if not self._count:
                self.position = max(self.position, head)
                return False
        page = await self.store.select_notifications_page(
            self.position, self.page_size, inclusive_of_start=False
        )
        if page.events:
            await self._dispatch(page.events)
        return None if len(page.events) == self.page_size else page.held_back

    async def _dispatch(self, records: Sequence[RecordedEvent]) -> None:
        """Decrypt what some stream wants and hand it over. The handing over is synchronous,
        after the last await, so a stream that subscribed while this page was being opened
        gets its events too."""
        opened: dict[int, Envelope] = {}
        failed: set[int] = set()
        while wanted := [
            r
            for r in records
            if r.position not in opened and r.position not in failed and self._wanted(r)
        ]:
            await self._open(wanted, opened, failed)
        for record in records:
            if record.position in failed:
                for stream in self._matching(record):
                    stream._end("an event failed its integrity check")
                continue
            envelope = opened.get(record.position)
            if envelope is not None:
                for stream in self._matching(record):
                    stream._offer(envelope)
        self.position = max(self.position, records[-1].position)

    async def _open(
        self, records: list[RecordedEvent], opened: dict[int, Envelope], failed: set[int]
    ) -> None:
        try:
            envelopes = await self.mapper.to_envelopes(records)
        except IntegrityViolation:
            envelopes = []
            for record in records:  # find the one at fault; the others still go out
                try:
                    envelopes += await self.mapper.to_envelopes([record])
                except IntegrityViolation as exc:
                    log.error("live feed: %s", exc)
                    failed.add(record.position)
        for envelope in envelopes:
            opened[envelope.position] = envelope

    def _wanted(self, record: RecordedEvent) -> bool:
        if self._every or record.topic in self._by_topic:
            return True
        streams = self._by_subject.get(record.subject_id)
        return streams is not None and any(s.wants(record.topic) for s in streams)

    def _matching(self, record: RecordedEvent) -> list[LiveStream]:
        found = [s for s in self._by_subject.get(record.subject_id, ()) if s.wants(record.topic)]
        found += self._by_topic.get(record.topic, ())
        found += self._every
        return found

    async def _select(
        self, stream: LiveStream, after: int, upto: int, limit: int
    ) -> list[RecordedEvent]:
        """What `stream` wants with `after` < position <= `upto` (a settled position)."""
        topics = sorted(stream.topics)
        if stream.subject_id is not None:
            return await self.store.select_subject_events(
                stream.subject_id, gt=after, lte=upto, limit=limit, topics=topics
            )
        return await self.store.select_notifications(
            after, limit, upto, topics, inclusive_of_start=False
        )

    # -- the LISTEN connection ---------------------------------------------------------------

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    def _on_erased(self, _conn: object, _pid: object, _channel: object, payload: object) -> None:
        """A subject was erased (by any process): its streams end, and a reconnect is refused
        (410). Nothing of theirs could be appended any more anyway."""
        try:
            subject_id = UUID(str(payload))
        except ValueError:
            return
        for stream in list(self._by_subject.get(subject_id, ())):
            stream._end("the subject was erased")

    def _on_terminated(self, conn: object) -> None:
        if conn is self._listener:
            self._lost.set()

    async def _listen(self) -> None:
        listener = await asyncio.wait_for(self.connect(), self.probe_timeout)
        try:
            listener.add_termination_listener(self._on_terminated)
            await asyncio.wait_for(
                listener.add_listener(self.store.channel, self._on_notify), self.probe_timeout
            )
            await asyncio.wait_for(
                listener.add_listener(self.mapper.vault.channel, self._on_erased),
                self.probe_timeout,
            )
        except BaseException:
            listener.terminate()
            raise
        self._listener = listener
        self._lost.clear()
        self._wake.set()  # whatever was notified while nobody listened: read it now

    async def _keep_listening(self) -> None:
        """Watch the LISTEN connection; when it is lost, reconnect with back-off (the reader
        polls meanwhile)."""
        while True:
            await self._watch()
            log.warning(
                "live feed: lost the LISTEN connection on %s; polling until it is back",
                self.store.channel,
            )
            await self._drop_listener(gracefully=False)
            delay = self.retry_delay
            while True:
                try:
                    await self._listen()
                    break
                except Exception as exc:  # whatever the cause, try again later
                    log.warning(
                        "live feed: cannot LISTEN on %s (%s); retrying in %.2fs",
                        self.store.channel,
                        type(exc).__name__,
                        delay,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
            log.info("live feed: listening on %s again", self.store.channel)

    async def _watch(self) -> None:
        """Return once the LISTEN connection is lost: terminated, or failing its probe."""
        listener = self._listener
        assert listener is not None
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self.liveness_interval)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.wait_for(listener.fetchval("SELECT 1"), self.probe_timeout)
            except Exception:  # closed, reset or silent: lost either way
                return

    async def _drop_listener(self, *, gracefully: bool) -> None:
        self._lost.set()
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.remove_termination_listener(self._on_terminated)
        if gracefully and not listener.is_closed():
            try:
                await asyncio.wait_for(listener.close(), self.probe_timeout)
                return
            except DATABASE_ERRORS:  # a timeout is an OSError
                pass
        listener.terminate()


def _discard(index: dict[K, set[LiveStream]], key: K, stream: LiveStream) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(stream)
        if not group:
            del index[key]
