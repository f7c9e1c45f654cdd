"""Drive writers for a fixed time after a warm-up and summarise what they did.

Every writer loops on its own `op` (one append) until the window closes. An append counts if
it completes inside the measured window; its latency is taken around the whole `op`, so
whatever the op does before it reaches the database (building events, encrypting) counts too.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter

AsyncOp = Callable[[], Awaitable[int]]
"""One append by one writer; returns how many events it appended."""
SyncOp = Callable[[], int]


@dataclass(frozen=True, slots=True)
class Measurement:
    seconds: float
    appends: int
    events: int
    p50_ms: float
    p99_ms: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def appends_per_s(self) -> float:
        return self.appends / self.seconds


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan if empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class _Tally:
    latencies: list[float]
    events: int = 0


def _summarise(tallies: Sequence[_Tally], seconds: float) -> Measurement:
    latencies = sorted(lat for tally in tallies for lat in tally.latencies)
    return Measurement(
        seconds=seconds,
        appends=len(latencies),
        events=sum(tally.events for tally in tallies),
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


async def drive_async(ops: Sequence[AsyncOp], warmup: float, seconds: float) -> Measurement:
    """Run every op concurrently on the current event loop."""
    begin = perf_counter() + warmup
    end = begin + seconds

    async def writer(op: AsyncOp) -> _Tally:
        tally = _Tally([])
        while (started := perf_counter()) < end:
            count = await op()
            done = perf_counter()
            if begin <= done <= end:
                tally.latencies.append(done - started)
                tally.events += count
        return tally

    tallies = await asyncio.gather(*(writer(op) for op in ops))
    return _summarise(tallies, seconds)


def drive_threads(ops: Sequence[SyncOp], warmup: float, seconds: float) -> Measurement:
    """Run every op in its own thread."""
    begin = perf_counter() + warmup
    end = begin + seconds

    def writer(op: SyncOp) -> _Tally:
        tally = _Tally([])
        while (started := perf_counter()) < end:
            count = op()
            done = perf_counter()
            if begin <= done <= end:
                tally.latencies.append(done - started)
                tally.events += count
        return tally

    with ThreadPoolExecutor(max_workers=len(ops), thread_name_prefix="bench-writer") as pool:
        tallies = list(pool.map(writer, ops))
    return _summarise(tallies, seconds)
