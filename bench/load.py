"""An HTTP/1.1 load generator that runs in a process of its own, so that it does not share the
server's event loop or interpreter lock.

It keeps N keep-alive connections to one host and port, each with one request in flight,
rotating through a list of request templates. The request bytes are prepared once per template;
a POST gets a fresh `Idempotency-Key` each time. A response is read by its status line and its
`Content-Length` only: the generator parses nothing else, so its cost per request stays small
(`LoadResult.cpu_share` says how much of one core it used; near 1.0 it was the bottleneck).

Only answers completed inside the measured window (after the warm-up) count. Non-2xx answers and
broken connections are counted apart, never as throughput, and a sample of them is kept.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import cast
from uuid import uuid4

import msgspec
import uvloop

MAX_SAMPLES = 5
"""Failed answers kept (status and the start of the body) to say what went wrong."""


class RequestTemplate(msgspec.Struct, frozen=True):
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


class LoadPlan(msgspec.Struct, frozen=True):
    host: str
    port: int
    templates: list[RequestTemplate]
    connections: int
    seconds: float
    warmup: float


class LoadResult(msgspec.Struct, frozen=True):
    seconds: float
    """The measured window."""
    ok: int
    """2xx answers completed inside the window."""
    failed: int
    """Non-2xx answers and broken connections inside the window."""
    completed: int
    """Every request answered, warm-up and tail included (what the server did in all)."""
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    cpu_share: float
    """The generator's own CPU time over the window, as a share of one core."""
    samples: list[str]

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.seconds

    @property
    def flagged(self) -> bool:
        return self.failed > 0 or self.ok == 0


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan if empty)."""
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


class _Prepared:
    """A template as bytes: `head` up to the headers' end, then `tail` (blank line and body)."""

    __slots__ = ("fresh_key", "head", "tail")

    def __init__(self, template: RequestTemplate, host: str) -> None:
        lines = [f"{template.method} {template.path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in template.headers]
        if template.body or template.method in {"POST", "PUT", "PATCH"}:
            lines.append(f"Content-Length: {len(template.body)}")
        self.head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self.tail = b"\r\n" + template.body
        self.fresh_key = template.method == "POST"

    def request(self) -> bytes:
        if self.fresh_key:
            return b"".join(
                (self.head, b"Idempotency-Key: ", str(uuid4()).encode(), b"\r\n", self.tail)
            )
        return self.head + self.tail


class _Answer(Exception):
    """A response the generator cannot read (no Content-Length, a broken connection)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(_Answer(f"connection lost: {exc or 'closed by the server'}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        status = int(buffer[9:12])
        head = bytes(buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else end])
        elif status in {204, 304} or status < 200:
            length = 0
        else:
            waiter.set_exception(_Answer(f"HTTP {status} without Content-Length"))
            return
        total = end + 4 + length
        if len(buffer) < total:
            return
        body = b"" if 200 <= status < 300 else bytes(buffer[end + 4 : total])
        del buffer[:total]
        waiter.set_result((status, body))

    async def send(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _drive(plan: LoadPlan) -> LoadResult:
    loop = asyncio.get_running_loop()
    prepared = [_Prepared(t, f"{plan.host}:{plan.port}") for t in plan.templates]
    turn = itertools.count()
    count = len(prepared)
    begin = time.perf_counter() + plan.warmup
    end = begin + plan.seconds
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    samples: list[str] = []
    failed = 0
    completed = 0

    async def connect() -> _Connection:
        _, connection = await loop.create_connection(_Connection, plan.host, plan.port)
        return connection

    def fail(done: float, what: str) -> None:
        nonlocal failed
        if begin <= done <= end:
            failed += 1
        if len(samples) < MAX_SAMPLES:
            samples.append(what)

    async def client() -> None:
        nonlocal completed
        connection = await connect()
        try:
            while (started := time.perf_counter()) < end:
                template = prepared[next(turn) % count]
                try:
                    status, body = await connection.send(template.request())
                except _Answer as exc:
                    fail(time.perf_counter(), str(exc))
                    connection.close()
                    connection = await connect()
                    continue
                done = time.perf_counter()
                completed += 1
                if 200 <= status < 300:
                    if begin <= done <= end:
                        latencies.append(done - started)
                        statuses[status] += 1
                else:
                    if begin <= done <= end:
                        statuses[status] += 1
                    fail(done, f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}")
        finally:
            connection.close()

    async def window() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, begin - time.perf_counter()))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(max(0.0, end - wall))
        return time.process_time() - cpu, time.perf_counter() - wall

    measured = asyncio.create_task(window())
    await asyncio.gather(*(client() for _ in range(plan.connections)))
    cpu, wall = await measured
    latencies.sort()
    return LoadResult(
        seconds=plan.seconds,
        ok=len(latencies),
        failed=failed,
        completed=completed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        statuses=dict(statuses),
        cpu_share=cpu / wall if wall > 0 else math.nan,
        samples=samples,
    )


def run_here(plan: LoadPlan) -> LoadResult:
    """Run `plan` in this process, on a uvloop event loop of its own."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_drive(plan))


class LoadGenerator:
    """A child process (spawned, so it shares nothing with the caller) that runs plans."""

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self._pool = pool

    def run(self, plan: LoadPlan) -> LoadResult:
        return self._pool.submit(run_here, plan).result()


@contextmanager
def load_generator() -> Iterator[LoadGenerator]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        yield LoadGenerator(pool)
