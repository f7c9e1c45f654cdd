"""Live updates: from an append on one server process to its Server-Sent Event on another.

    .venv/bin/python -m bench.live [--streams 1000] [--rate 250,1000] [--seconds 10]
        [--rounds 3] [--quick] [--json PATH]

Two `continuity run` processes (one worker each) on a fresh schema (dropped at the end). Each
round and rate, a reader process opens `--streams` SSE streams (`GET /v1/me/session/events`)
on the second, one per new customer, over raw sockets (asyncio protocols on uvloop, so that a
thousand streams cost the client little); an appender (this process) then sends
`POST /v1/me/cart/items` to the first at the rate, open loop, round-robin over those customers,
each with a SKU naming the append. Each `--rate` is run in turn: the goal's 1,000/s, and one
this machine sustains with CPU to spare. The reader stamps each event's arrival; an append's
latency is its event's arrival less the moment its answer arrived (acknowledged: the event was
committed by then) and less the moment it was sent (the whole path). One append per customer
first (opening the carts and their keys) is left out of the figures. Each process's CPU over
the measured appends is reported, and every append's event is checked to arrive exactly once.

The baseline, in the same run and rounds (alternating which goes first): raw PostgreSQL
NOTIFY -> LISTEN on the same machine, a bare asyncpg `pg_notify` at the same rate to a listener
on another connection (one process of its own), from just before the send to the callback.
Goal: p99 from acknowledgement below 50 ms.

Clocks: `time.monotonic()` (CLOCK_MONOTONIC, one clock for every process of the machine).
The database: CONTINUITY_BENCH_DATABASE_URL, else CONTINUITY_DATABASE_URL, else the local one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import re
import secrets
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit
from uuid import uuid4

import asyncpg
import msgspec
import uvloop

from api.auth import issue_token
from bench.appends import about_the_run, database_url, server_version
from bench.http import HOST, free_port, running
from bench.load import percentile
from bench.results import Figure, ScenarioResult

GOAL_P99_MS = 50.0
CONNECTIONS = 64
"""The appender's keep-alive connections (an append waits for a free one: open loop, so the
wait counts in the latency from sending)."""
OPENING = 100
"""Streams the reader opens at once."""
GRACE = 5.0
"""Seconds the reader keeps listening after the last append was answered."""
SKU = re.compile(rb'"sku":"L(\d+)"')
ITEM = b'{"name":"Live bench mug","unit_price":"4.20","quantity":1,"sku":"L%d"}'


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.live")
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument(
        "--rate", type=_rates, default=[250, 1_000], help="appends per second (one or more, a,b)"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.rate, args.seconds, args.rounds = 200, [200], 3.0, 1
    return args


def _rates(text: str) -> list[int]:
    rates = [int(part) for part in text.split(",") if part.strip()]
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("appends per second: positive whole numbers, a,b")
    return rates


# The reader: many SSE streams in one process ----------------------------------------------------


class _Stream(asyncio.Protocol):
    """One SSE response: stamps the arrival of every `cart.item_added` this bench sent."""

    def __init__(self, arrivals: dict[int, float], duplicates: list[int]) -> None:
        self.arrivals = arrivals
        self.duplicates = duplicates
        self.buffer = b""
        self.answered = False
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer + data
        end = buffer.rfind(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return
        complete, self.buffer = buffer[: end + 4], buffer[end + 4 :]
        if not self.started.done():
            if not self.answered:
                if not complete.startswith(b"HTTP/1.1 200"):
                    error = RuntimeError(complete[:200].decode(errors="replace"))
                    self.started.set_exception(error)
                    return
                self.answered = True
            if b": connected" in complete:
                self.started.set_result(None)
        for match in SKU.finditer(complete):
            seq = int(match.group(1))
            if seq in self.arrivals:
                self.duplicates.append(seq)
            else:
                self.arrivals[seq] = now

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.started.done():
            self.started.set_exception(RuntimeError(f"closed before it started: {exc}"))


async def _read_streams(port: int, tokens: list[str], pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    arrivals: dict[int, float] = {}
    duplicates: list[int] = []
    streams: list[_Stream] = []
    gate = asyncio.Semaphore(OPENING)

    async def open_one(token: str) -> None:
        async with gate:
            _, stream = await loop.create_connection(
                lambda: _Stream(arrivals, duplicates), HOST, port
            )
            streams.append(stream)
            assert stream.transport is not None
            stream.transport.write(
                b"GET /v1/me/session/events HTTP/1.1\r\nHost: bench\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n"
                b"Accept: text/event-stream\r\n\r\n"
            )
            await asyncio.wait_for(stream.started, 60)

    started = time.monotonic()
    await asyncio.gather(*(open_one(token) for token in tokens))
    pipe.send(("open", time.monotonic() - started))
    await asyncio.to_thread(pipe.recv)  # told to stop
    for stream in streams:
        if stream.transport is not None:
            stream.transport.close()
    pipe.send((arrivals, duplicates))


def read_streams(port: int, tokens: list[str], pipe: Connection) -> None:
    """The reader process's target."""
    uvloop.run(_read_streams(port, tokens, pipe))


# The appender: open loop at a fixed rate ----------------------------------------------------------


@dataclass
class Append:
    seq: int
    sent: float = 0.0
    acked: float = 0.0
    status: int = 0


class _Client:
    """One keep-alive connection of the appender."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def post(self, head: bytes, body: bytes) -> int:
        self.writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        at = header.lower().find(b"\r\ncontent-length:")
        length = int(header[at + 17 : header.find(b"\r\n", at + 2)]) if at >= 0 else 0
        await self.reader.readexactly(length)
        return status


async def append_at_rate(
    port: int, heads: list[bytes], first_seq: int, count: int, rate: float
) -> list[Append]:
    """`count` appends at `rate` per second, round-robin over `heads` (one per customer)."""
    idle: asyncio.Queue[_Client] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        idle.put_nowait(_Client(*await asyncio.open_connection(HOST, port)))
    done: list[Append] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(append: Append, head: bytes) -> None:
        client = await idle.get()
        append.sent = time.monotonic()
        append.status = await client.post(head, ITEM % append.seq)
        append.acked = time.monotonic()
        done.append(append)
        idle.put_nowait(client)

    start = time.monotonic() + 0.05
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(Append(first_seq + n), heads[n % len(heads)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.wait(set(tasks))
    while not idle.empty():
        idle.get_nowait().writer.close()
    return done


# The baseline: bare NOTIFY -> LISTEN ------------------------------------------------------------


async def _notify_baseline(url: str, count: int, rate: float) -> list[float]:
    channel = f"bench_live_{secrets.token_hex(4)}"
    listener = await asyncpg.connect(url)
    sender = await asyncpg.connect(url)
    sent: dict[int, float] = {}
    latencies: list[float] = []
    heard = asyncio.Event()

    def on_notify(_conn: object, _pid: object, _channel: object, payload: object) -> None:
        latencies.append(time.monotonic() - sent[int(str(payload))])
        if len(latencies) == count:
            heard.set()

    await listener.add_listener(channel, on_notify)
    try:
        start = time.monotonic() + 0.05
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[n] = time.monotonic()
            await sender.execute("SELECT pg_notify($1, $2)", channel, str(n))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(heard.wait(), GRACE)
    finally:
        await sender.close()
        await listener.close()
    return latencies


def notify_baseline(url: str, count: int, rate: float, pipe: Connection) -> None:
    """The baseline process's target: sender and listener on two connections of one loop."""
    pipe.send(uvloop.run(_notify_baseline(url, count, rate)))


# One round of ours -------------------------------------------------------------------------------


def database_connections(pid: int, url: str) -> int:
    """The process's TCP connections to the database's port (Linux /proc)."""
    port = urlsplit(url).port or 5432
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rpartition(":")[2], 16) == port and fields[9] in inodes:
                count += 1
    return count


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user and system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    rate: int
    from_ack: list[float]
    from_send: list[float]
    appended: int
    failed: int
    missing: int
    duplicates: int
    open_seconds: float
    achieved: float
    db_connections: int
    rss_before_mib: float
    rss_open_mib: float
    cpu: dict[str, float] = field(default_factory=dict)
    """Each process's CPU over the measured appends, as a share of one core."""


@dataclass
class Servers:
    append_pid: int
    append_port: int
    stream_pid: int
    stream_port: int
    secret: str
    url: str
    next_seq: int = 0


def ours(
    servers: Servers, args: argparse.Namespace, rate: int, progress: Callable[[str], None]
) -> Round:
    subjects = [uuid4() for _ in range(args.streams)]
    tokens = [
        issue_token(servers.secret, s, "customer", "bench", timedelta(hours=2)) for s in subjects
    ]
    heads = [
        b"POST /v1/me/cart/items HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        for token in tokens
    ]
    rss_before = resident_mib(servers.stream_pid)
    spawn = multiprocessing.get_context("spawn")
    mine, theirs = spawn.Pipe()
    reader = spawn.Process(target=read_streams, args=(servers.stream_port, tokens, theirs))
    reader.start()
    try:
        progress(f"opening {args.streams:,} streams")
        kind, open_seconds = mine.recv()
        assert kind == "open"
        rss_open = resident_mib(servers.stream_pid)
        db_connections = database_connections(servers.stream_pid, servers.url)
        progress(f"{args.streams:,} streams open in {open_seconds:.1f} s; appending at {rate:,}/s")
        warm = asyncio.run(
            append_at_rate(servers.append_port, heads, servers.next_seq, len(heads), rate)
        )
        count = int(rate * args.seconds)
        first = servers.next_seq + len(heads)
        pids = {
            "append_server": servers.append_pid,
            "stream_server": servers.stream_pid,
            "sse_reader": cast(int, reader.pid),
            "appender": os.getpid(),
        }
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        measured = asyncio.run(append_at_rate(servers.append_port, heads, first, count, rate))
        elapsed = time.monotonic() - started
        cpu = {
            name: round((cpu_seconds(pid) - cpu_before[name]) / elapsed, 3)
            for name, pid in pids.items()
        }
        servers.next_seq = first + count
        time.sleep(GRACE)
        mine.send("stop")
        arrivals, duplicates = mine.recv()
    finally:
        reader.join(30)
        if reader.is_alive():
            reader.kill()
    ok = [a for a in measured if a.status == 200]
    from_ack = sorted((arrivals[a.seq] - a.acked) * 1000 for a in ok if a.seq in arrivals)
    from_send = sorted((arrivals[a.seq] - a.sent) * 1000 for a in ok if a.seq in arrivals)
    span = max(a.sent for a in measured) - min(a.sent for a in measured)
    return Round(
        rate=rate,
        from_ack=from_ack,
        from_send=from_send,
        appended=len(ok),
        failed=len(measured) - len(ok) + sum(a.status != 200 for a in warm),
        missing=sum(1 for a in ok if a.seq not in arrivals),
        duplicates=len(duplicates),
        open_seconds=open_seconds,
        achieved=(len(measured) - 1) / span if span > 0 else 0.0,
        db_connections=db_connections,
        rss_before_mib=rss_before,
        rss_open_mib=rss_open,
        cpu=cpu,
    )


def baseline(url: str, args: argparse.Namespace, rate: int) -> list[float]:
    spawn = multiprocessing.get_context("spawn")
    mine, theirs = spawn.Pipe()
    count = int(rate * args.seconds)
    process = spawn.Process(target=notify_baseline, args=(url, count, rate, theirs))
    process.start()
    try:
        latencies: list[float] = mine.recv()
    finally:
        process.join(30)
    return sorted(latency * 1000 for latency in latencies)


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> ScenarioResult:
    url = database_url()
    schema = f"bench_live_{secrets.token_hex(5)}"
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "CONTINUITY_DATABASE_URL": url,
        "CONTINUITY_DATABASE_SCHEMA": schema,
        "CONTINUITY_JWT_SECRET": secret,
        "CONTINUITY_MASTER_KEY": _master_key(),
        "CONTINUITY_LOG_LEVEL": "WARNING",
        "CONTINUITY_RATE_LIMIT": "0",
        "CONTINUITY_WORKERS": "1",
    }
    venv_bin = Path(sys.executable).parent
    rounds: list[Round] = []
    baselines: dict[int, list[list[float]]] = {rate: [] for rate in args.rate}
    try:
        with ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-live-")))
            ports = free_port(), free_port()
            one, two = (
                stack.enter_context(
                    running(
                        name,
                        [str(venv_bin / "continuity"), "run", "--host", HOST, "--port", str(port)],
                        env,
                        "/ready",
                        workdir,
                    )
                )
                for name, port in zip(("appends", "streams"), ports, strict=True)
            )
            state = Servers(one.process.pid, ports[0], two.process.pid, ports[1], secret, url)
            for n in range(args.rounds):
                for rate in args.rate:
                    progress(f"round {n + 1} of {args.rounds}, {rate:,} appends/s")
                    order = ("baseline", "ours") if n % 2 == 0 else ("ours", "baseline")
                    for which in order:
                        if which == "baseline":
                            baselines[rate].append(baseline(url, args, rate))
                        else:
                            rounds.append(ours(state, args, rate, progress))
                    last = rounds[-1]
                    progress(
                        f"  p50 {percentile(last.from_ack, 0.5):.1f} ms, p99"
                        f" {percentile(last.from_ack, 0.99):.1f} ms from ack at"
                        f" {last.achieved:,.0f}/s; NOTIFY p99"
                        f" {percentile(baselines[rate][-1], 0.99):.2f} ms; missing"
                        f" {last.missing}, duplicates {last.duplicates}; CPU {last.cpu}"
                    )
        postgres = asyncio.run(server_version(url))
    finally:
        asyncio.run(_drop(url, schema))
    return _result(args, rounds, baselines, postgres)


def _result(
    args: argparse.Namespace,
    rounds: list[Round],
    baselines: dict[int, list[list[float]]],
    postgres: str,
) -> ScenarioResult:
    def p(values: list[float], q: float) -> float:
        return percentile(values, q)

    figures = []
    for rate in args.rate:
        mine = [r for r in rounds if r.rate == rate]
        setup = f"{args.streams:,} streams, {rate:,} appends/s"
        raw = "raw NOTIFY→LISTEN"
        goal = "; goal < 50 ms" if rate == max(args.rate) else ""
        figures += [
            Figure(
                f"p50 append acknowledged → SSE event on another process ({setup})",
                "ms",
                [p(r.from_ack, 0.5) for r in mine],
                f"{raw} p50",
                [p(b, 0.5) for b in baselines[rate]],
                higher_is_better=False,
            ),
            Figure(
                f"p99 append acknowledged → SSE event on another process ({setup}{goal})",
                "ms",
                [p(r.from_ack, 0.99) for r in mine],
                f"{raw} p99",
                [p(b, 0.99) for b in baselines[rate]],
                higher_is_better=False,
            ),
            Figure(
                f"p50 append sent → SSE event ({setup})",
                "ms",
                [p(r.from_send, 0.5) for r in mine],
            ),
            Figure(
                f"p99 append sent → SSE event ({setup})",
                "ms",
                [p(r.from_send, 0.99) for r in mine],
            ),
        ]
    per_round = [
        {
            "rate": r.rate,
            "achieved_rate": round(r.achieved, 1),
            "appended": r.appended,
            "failed": r.failed,
            "missing": r.missing,
            "duplicates": r.duplicates,
            "streams_open_seconds": round(r.open_seconds, 2),
            "stream_server_db_connections": r.db_connections,
            "stream_server_rss_mib": [round(r.rss_before_mib, 1), round(r.rss_open_mib, 1)],
            "cpu_share_of_a_core": r.cpu,
            "p999_from_ack_ms": round(p(r.from_ack, 0.999), 2),
            "max_from_ack_ms": round(r.from_ack[-1], 2) if r.from_ack else None,
        }
        for r in rounds
    ]
    top = [r for r in rounds if r.rate == max(args.rate)]
    p99 = statistics.median(p(r.from_ack, 0.99) for r in top)
    return ScenarioResult(
        slug="live",
        title="Live updates: an append on one process to its SSE event on another",
        command=".venv/bin/python -m bench.live "
        + shlex.join(
            [
                *("--streams", str(args.streams)),
                *("--rate", ",".join(str(rate) for rate in args.rate)),
                *("--seconds", f"{args.seconds:g}", "--rounds", str(args.rounds)),
            ]
        ),
        figures=figures,
        about=about_the_run(
            postgres,
            "uvloop",
            streams=args.streams,
            rates=args.rate,
            seconds=args.seconds,
            rounds=args.rounds,
            goal_p99_ms=GOAL_P99_MS,
            goal_met=p99 < GOAL_P99_MS,
            cores=os.cpu_count(),
            reader="raw-socket SSE reader, asyncio protocols on uvloop, in its own process",
            appender=f"open loop, {CONNECTIONS} keep-alive connections, in the bench process",
            baseline="asyncpg pg_notify at the same rate to a listener on another connection"
            " (one process, uvloop)",
            per_round=per_round,
        ),
    )


def _master_key() -> str:
    from privacy.master_key import MasterKey

    return MasterKey.generate().to_text()


async def _drop(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def measure(
    argv: Sequence[str], *, progress: Callable[[str], None] | None = None
) -> list[ScenarioResult]:
    args = parse_args(argv)
    return [run(args, progress or (lambda _text: None))]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args, lambda text: print(text, file=sys.stderr, flush=True))
    for figure in result.figures:
        ratio = f" ({figure.ratio:.2f}x {figure.baseline_name})" if figure.ratio else ""
        print(f"{figure.what}: {figure.ours:,.2f} {figure.unit}{ratio}")
    print(msgspec.json.format(msgspec.json.encode(result.about["per_round"])).decode())
    if args.json:
        from bench.results import to_json

        Path(args.json).write_bytes(to_json(result))


if __name__ == "__main__":
    main()
