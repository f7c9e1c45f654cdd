"""Every metric `/metrics` exposes, in one place, so what leaves the process can be audited.

Labels are bounded and never personal: HTTP method, route *template* (`/v1/me/cart/items/{sku}`,
never the raw path), status code, append outcome, projection name, pool state. No subject,
device, token or client address is ever a label.

Each app owns a `CollectorRegistry` (prometheus-client) instead of the process-wide default, so
two apps in one process (the tests build many) never share or double-register series. Values
that live in the database (pool usage, projection lag) are read when scraped (`refresh`), not
kept up to date on every request.

With several worker processes (`continuity run --workers N`) a scrape reaches one of them, so
each worker's own counts would make counters jump between scrapes. There prometheus-client's
multiprocess mode is on (`PROMETHEUS_MULTIPROC_DIR`, set by the parent before the workers
start, read when prometheus-client is imported): every worker writes its values to files in
that directory and any worker's `/metrics` answers with all of them. Counters and histograms
are summed over every worker that ever ran (a worker that died keeps its counts); each live
worker's pool is a series with a `pid` label, kept current every few seconds
(`follow_pool`); the database-backed gauges are the value read most recently by any worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from continuity.db import DATABASE_ERRORS
from continuity.projection import Projection
from continuity.projection_status import lag

__all__ = ["CONTENT_TYPE", "SHARED_DIR_VARIABLE", "Metrics"]

SHARED_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
SHARED_DIR = os.environ.get(SHARED_DIR_VARIABLE) or None
"""Where the workers of this server share their values, or None for one process. Read once,
when prometheus-client is (this module imports it): that is when it chooses how to store."""
POOL_FOLLOW_SECONDS = 5.0

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of a request no route matched (404, 405, a CORS preflight)."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
log = logging.getLogger("continuity.metrics")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class Metrics:
    """The registry and its series. `observe_request` and `observe_append` are called on the
    hot paths (a counter and a histogram each, their labelled children looked up once per
    label set: `labels()` validates and locks on every call); `refresh` runs at scrape time."""

    def __init__(self) -> None:
        self._request_series: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._append_series: dict[str, tuple[Counter, Histogram]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "continuity_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "continuity_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.appends = Counter(
            "continuity_appends",
            "Appends to the event log (one per atomic batch), by outcome: committed, replayed"
            " (an idempotent retry), conflict, erased, reused (an event id used for something"
            " else) or failed.",
            ["outcome"],
            registry=r,
        )
        self.appended_events = Counter(
            "continuity_appended_events", "Events committed to the log.", registry=r
        )
        self.append_seconds = Histogram(
            "continuity_append_duration_seconds",
            "Time of one append, with its inline projections, by outcome.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pool_connections = Gauge(
            "continuity_db_pool_connections",
            "Connections of the database pool, by state (in_use, idle), at scrape time.",
            ["state"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.pool_max = Gauge(
            "continuity_db_pool_max_connections",
            "The most connections the database pool may open.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.log_head = Gauge(
            "continuity_log_head_position",
            "The highest position in the event log.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.projection_position = Gauge(
            "continuity_projection_position",
            "The log position each projection's rows reflect.",
            ["projection"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.projection_behind = Gauge(
            "continuity_projection_behind_events",
            "Events of each projection's topics after its position (capped; 0 when current).",
            ["projection"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.live_streams = Gauge(
            "continuity_live_streams",
            "Live update streams (Server-Sent Events) open now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.scrape_errors = Counter(
            "continuity_metrics_database_errors",
            "Scrapes whose database-backed values could not be read (the database was down).",
            registry=r,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method if method in METHODS else "other", route, str(status))
        series = self._request_series.get(labels)
        if series is None:
            series = (self.requests.labels(*labels), self.request_seconds.labels(*labels))
            self._request_series[labels] = series
        series[0].inc()
        series[1].observe(seconds)

    def observe_append(self, outcome: str, events: int, seconds: float) -> None:
        series = self._append_series.get(outcome)
        if series is None:
            series = (self.appends.labels(outcome), self.append_seconds.labels(outcome))
            self._append_series[outcome] = series
        series[0].inc()
        series[1].observe(seconds)
        if outcome == "committed":
            self.appended_events.inc(events)

    async def refresh(self, pool: asyncpg.Pool, projections: Iterable[Projection]) -> None:
        """Read the pool's usage and each projection's lag (one cheap query per projection).
        A database that cannot be reached leaves the last values and counts an error."""
        self._observe_pool(pool)
        try:
            async with pool.acquire() as conn:
                for projection in projections:
                    found = await lag(conn, projection)
                    self.log_head.set(found.head)
                    self.projection_position.labels(projection.name).set(found.position)
                    self.projection_behind.labels(projection.name).set(found.behind)
        except DATABASE_ERRORS as exc:
            self.scrape_errors.inc()
            log.warning("metrics: the database could not be read (%s)", type(exc).__name__)

    def _observe_pool(self, pool: asyncpg.Pool) -> None:
        size, idle = pool.get_size(), pool.get_idle_size()
        self.pool_connections.labels("in_use").set(size - idle)
        self.pool_connections.labels("idle").set(idle)
        self.pool_max.set(pool.get_max_size())

    async def follow_pool(self, pool: asyncpg.Pool, every: float = POOL_FOLLOW_SECONDS) -> None:
        """Keep this worker's pool gauges current until cancelled: with several workers, a
        scrape is answered by one of them and the others' pools would otherwise show what
        they were at the last scrape each answered. Costs nothing but two reads of the pool."""
        while True:
            self._observe_pool(pool)
            await asyncio.sleep(every)

    @staticmethod
    def shared() -> bool:
        """Whether this process shares its values with the other workers (see the module)."""
        return SHARED_DIR is not None

    @staticmethod
    def forget_dead_workers() -> None:
        """A worker that crashed never called `leave`, so its pool series would stay in every
        scrape: the worker that replaces it (or any later one) drops those of dead processes."""
        if SHARED_DIR is None:
            return
        for path in Path(SHARED_DIR).glob("gauge_live*_*.db"):
            pid = int(path.stem.rpartition("_")[2])
            if not _alive(pid):
                mark_process_dead(pid, SHARED_DIR)  # type: ignore[no-untyped-call]

    @staticmethod
    def leave() -> None:
        """A worker stopping: its live gauges (its pool) leave every later scrape; its counts
        stay in the sums."""
        if SHARED_DIR is not None:
            mark_process_dead(os.getpid(), SHARED_DIR)  # type: ignore[no-untyped-call]

    def exposition(self) -> bytes:
        """The Prometheus text format of every series: this app's, or every worker's."""
        if SHARED_DIR is None:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, SHARED_DIR)  # type: ignore[no-untyped-call]
        return generate_latest(every_worker)
