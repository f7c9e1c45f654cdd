"""The request path through the real server, against a bare endpoint in the same server setup.

    .venv/bin/python -m bench.http [--scenarios http-append,resume,action-by-history]
        [--rounds 3] [--seconds 10] [--warmup 2] [--connections 32] [--customers 1000]
        [--histories 10:1000,1000:100,10000:10] [--workers 1] [--json PATH]

It starts `continuity run` (the venv's, as a subprocess, on a fresh schema dropped at the end)
and `bench.bare` (a bare Litestar app on uvicorn with the same worker count, see its docstring),
and drives both over HTTP/1.1 keep-alive from a load generator in a process of its own
(`bench.load`). Ours and the baseline take turns in every round, alternating which goes first.

- http-append: `POST /v1/me/cart/items` (one cart action) by `--connections` connections
  rotating over `--customers` customers and a few dozen SKUs, against `POST /bare/events`
  (one INSERT).
- resume: `GET /v1/me/session` for customers whose cart history has each length of
  `--histories`, against `GET /bare/session/{id}` (one read by primary key).
- action-by-history: one client, sequential, adding one item to carts with each history
  length; the baseline is ours at the shortest history.

Long histories are seeded through the library (`seed_cart`), not over HTTP. `--histories`
gives each length and how many customers have it: each action adds an event, so the carts of
action-by-history grow by (requests / customers) over a run; `about` reports that growth.

The database: CONTINUITY_BENCH_DATABASE_URL, else CONTINUITY_DATABASE_URL, else the local
server at postgresql://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import platform
import secrets
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from aggregates.cart import Cart
from aggregates.metadata import EventMeta
from api.auth import issue_token
from bench import bare
from bench.appends import about_the_run, database_url, server_version
from bench.load import LoadGenerator, LoadPlan, LoadResult, RequestTemplate, load_generator
from bench.results import Figure, ScenarioResult, Series
from continuity.repository import IdempotencyKey
from continuity.runtime import Runtime
from continuity.settings import Settings
from privacy.master_key import Keyring

SCENARIOS = ("http-append", "resume", "action-by-history")
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
"""The checkout, where `python -m bench.bare` finds the bench package."""
SKUS = [f"SKU-{n:02d}" for n in range(24)]
"""Rotated by http-append: a cart never nears 100 lines, nor 10,000 of one SKU."""
SEEDED_SKUS = SKUS[:4]
ITEM_NAME = "Espresso beans, whole, 1 kg"
UNIT_PRICE = "12.50"
RATE_LIMIT = 1_000_000
"""Per minute, for token-free requests only (`api.rate_limits`): out of the way of `/ready`."""
READY_TIMEOUT = 120.0
JSON_CONTENT = ("Content-Type", "application/json")
BUSY_LOAD_GENERATOR = 0.8
"""Above this share of one core, the load generator may be what limits a run."""

GOAL_APPEND_RATE = 0.6
GOAL_APPEND_LATENCY = 2.0
GOAL_RESUME_RATE = 0.8
GOAL_HISTORY_LATENCY = 1.2

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    scenarios: list[str]
    rounds: int
    seconds: float
    warmup: float
    connections: int
    customers: int
    histories: list[tuple[int, int]]
    """(events in the cart's history, customers with it), shortest first."""
    workers: int
    json: Path | None

    def command(self, scenario: str) -> str:
        """The command that reproduces `scenario` alone with these options."""
        histories = ",".join(f"{length}:{count}" for length, count in self.histories)
        return shlex.join(
            [
                ".venv/bin/python",
                "-m",
                "bench.http",
                "--scenarios",
                scenario,
                "--rounds",
                str(self.rounds),
                "--seconds",
                f"{self.seconds:g}",
                "--warmup",
                f"{self.warmup:g}",
                "--connections",
                str(self.connections),
                "--customers",
                str(self.customers),
                "--histories",
                histories,
                "--workers",
                str(self.workers),
            ]
        )


def _histories(text: str) -> list[tuple[int, int]]:
    try:
        pairs = [tuple(int(n) for n in part.split(":")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected LENGTH:CUSTOMERS,...") from None
    if not pairs or any(len(p) != 2 or p[0] < 3 or p[1] < 1 for p in pairs):
        raise argparse.ArgumentTypeError("expected LENGTH:CUSTOMERS,... with LENGTH >= 3")
    return sorted((p[0], p[1]) for p in pairs)


def parse_options(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="before each run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--customers", type=int, default=1000, help="for http-append")
    parser.add_argument(
        "--histories",
        type=_histories,
        default=_histories("10:1000,1000:100,10000:10"),
        help="LENGTH:CUSTOMERS,... for resume and action-by-history",
    )
    parser.add_argument("--workers", type=int, default=1, help="server processes, each server")
    parser.add_argument("--json", type=Path, default=None, help="write the results there")
    args = parser.parse_args(list(argv))
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown or not scenarios:
        parser.error(f"--scenarios: choose among {', '.join(SCENARIOS)}")
    if min(args.rounds, args.connections, args.customers, args.workers) < 1:
        parser.error("--rounds, --connections, --customers and --workers must be at least 1")
    return Options(
        scenarios=[s for s in SCENARIOS if s in scenarios],
        rounds=args.rounds,
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        customers=args.customers,
        histories=args.histories,
        workers=args.workers,
        json=args.json,
    )


# Seeding ----------------------------------------------------------------------------------------


async def seed_cart(runtime: Runtime, subject_id: UUID, events: int) -> None:
    """Give `subject_id` a cart whose history has `events` events, in ONE append through the
    library: opened, a few items added, then quantities changed until the count is reached."""
    cart = Cart(subject_id=subject_id)
    added = SEEDED_SKUS[: max(1, min(len(SEEDED_SKUS), events - 1))]
    for sku in added:
        cart.add_item(sku, ITEM_NAME, Decimal(UNIT_PRICE), 1)
    for changed in range(events - 1 - len(added)):
        cart.change_quantity(added[changed % len(added)], 1 + changed % 5)
    await runtime.repository.save(
        cart,
        subject_id,
        EventMeta(channel="web", device="seed", actor_type="customer"),
        IdempotencyKey(subject_id, uuid4()),
        b"seed",
    )


async def seed(
    settings: Settings, url: str, keyring: Keyring, histories: dict[int, list[UUID]]
) -> None:
    """Every customer of `histories` (length -> customers) gets a cart of that length."""
    runtime = await Runtime.open(settings, url, keyring)
    try:
        jobs = [(subject, length) for length, subjects in histories.items() for subject in subjects]
        gate = asyncio.Semaphore(4)

        async def one(subject: UUID, length: int) -> None:
            async with gate:
                await seed_cart(runtime, subject, length)

        await asyncio.gather(*(one(subject, length) for subject, length in jobs))
    finally:
        await runtime.close()


# Servers ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def wait_ready(server: Server, path: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            address = f"http://{HOST}:{server.port}{path}"
            with urllib.request.urlopen(address, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not answer {path} in {timeout:g} s")
        time.sleep(0.2)


@contextmanager
def running(
    name: str, command: list[str], env: dict[str, str], ready_path: str, workdir: Path
) -> Iterator[Server]:
    log = workdir / f"{name}.log"
    port = int(command[command.index("--port") + 1])
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(name, port, process, log)
    try:
        wait_ready(server, ready_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Scenarios --------------------------------------------------------------------------------------


@dataclass
class Bench:
    options: Options
    load: LoadGenerator
    ours: int
    """Our server's port."""
    baseline: int
    """The bare server's port."""
    secret: str
    audience: str
    append_customers: list[UUID]
    histories: dict[int, list[UUID]]
    bare_sessions: list[UUID]
    progress: Progress
    runs: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[UUID, tuple[str, str]] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)

    def token(self, subject: UUID) -> tuple[str, str]:
        """The customer's Authorization header (one object per customer: the load plan is
        pickled to the load generator, and pickle stores a shared object once)."""
        header = self.tokens.get(subject)
        if header is None:
            token = issue_token(
                self.secret, subject, "customer", "bench", timedelta(hours=2), self.audience
            )
            header = self.tokens[subject] = ("Authorization", f"Bearer {token}")
        return header

    def run(
        self, label: str, port: int, templates: list[RequestTemplate], connections: int
    ) -> LoadResult:
        result = self.load.run(
            LoadPlan(HOST, port, templates, connections, self.options.seconds, self.options.warmup)
        )
        self.runs.append(
            {
                "run": label,
                "requests_per_s": round(result.requests_per_s, 1),
                "p50_ms": round(result.p50_ms, 3),
                "p99_ms": round(result.p99_ms, 3),
                "failed": result.failed,
                "statuses": {str(k): v for k, v in result.statuses.items()},
                "load_generator_cpu": round(result.cpu_share, 3),
                "samples": result.samples,
            }
        )
        flag = (
            f"  FLAGGED: {result.failed} failed, e.g. {result.samples[:1]}"
            if result.flagged
            else ""
        )
        if result.cpu_share > BUSY_LOAD_GENERATOR:
            flag += "  (the load generator was busy: it may be the bottleneck)"
        self.progress(
            f"  {label}: {result.requests_per_s:,.0f} req/s, p50 {result.p50_ms:.2f} ms,"
            f" p99 {result.p99_ms:.2f} ms, load generator {result.cpu_share:.0%} of a core{flag}"
        )
        return result

    def add_item(self, subject: UUID, sku: str) -> RequestTemplate:
        """`POST /v1/me/cart/items` of one `sku` for `subject` (the load generator gives each
        request a fresh Idempotency-Key)."""
        body = self.bodies.get(sku)
        if body is None:
            body = self.bodies[sku] = msgspec.json.encode(
                {"sku": sku, "name": ITEM_NAME, "unit_price": UNIT_PRICE}
            )
        return RequestTemplate(
            "POST", "/v1/me/cart/items", (self.token(subject), JSON_CONTENT), body
        )

    def http_append(self) -> ScenarioResult:
        customers = self.append_customers
        ours = [
            self.add_item(customer, SKUS[(n // len(customers)) % len(SKUS)])
            for n, customer in enumerate(customers * len(SKUS))
        ]
        bare_body = msgspec.json.encode(
            {"sku": SKUS[0], "name": ITEM_NAME, "unit_price": UNIT_PRICE}
        )
        baseline = [RequestTemplate("POST", "/bare/events", (JSON_CONTENT,), bare_body)]
        connections = self.options.connections
        results: dict[str, list[LoadResult]] = {"ours": [], "bare": []}
        for n in range(self.options.rounds):
            self.progress(f"http-append, round {n + 1} of {self.options.rounds}")
            order = ["ours", "bare"] if n % 2 == 0 else ["bare", "ours"]
            for who in order:
                if who == "ours":
                    results[who].append(self.run("http-append ours", self.ours, ours, connections))
                else:
                    results[who].append(
                        self.run("http-append bare insert", self.baseline, baseline, connections)
                    )
        ours_runs, bare_runs = results["ours"], results["bare"]
        name = "bare insert"
        return ScenarioResult(
            slug="http-append",
            title="HTTP append of one cart action, against a bare insert endpoint",
            command=self.options.command("http-append"),
            figures=[
                Figure(
                    "HTTP append of one cart action (POST /v1/me/cart/items)",
                    "req/s",
                    [r.requests_per_s for r in ours_runs],
                    name,
                    [r.requests_per_s for r in bare_runs],
                    True,
                    GOAL_APPEND_RATE,
                ),
                Figure(
                    "p50 latency of an append",
                    "ms",
                    [r.p50_ms for r in ours_runs],
                    name,
                    [r.p50_ms for r in bare_runs],
                    False,
                    GOAL_APPEND_LATENCY,
                ),
                Figure(
                    "p99 latency of an append",
                    "ms",
                    [r.p99_ms for r in ours_runs],
                    name,
                    [r.p99_ms for r in bare_runs],
                    False,
                    GOAL_APPEND_LATENCY,
                ),
            ],
            about={"connections": connections, "customers": len(customers), "skus": len(SKUS)},
        )

    def resume(self) -> ScenarioResult:
        connections = self.options.connections
        ours = {
            length: [
                RequestTemplate("GET", "/v1/me/session", (self.token(subject),))
                for subject in subjects
            ]
            for length, subjects in self.histories.items()
        }
        baseline = [RequestTemplate("GET", f"/bare/session/{s}") for s in self.bare_sessions]
        lengths = list(ours)
        rates: dict[int, list[float]] = {length: [] for length in lengths}
        bare_rates: list[float] = []
        for n in range(self.options.rounds):
            self.progress(f"resume, round {n + 1} of {self.options.rounds}")
            turn = lengths[n % len(lengths) :] + lengths[: n % len(lengths)]
            if n % 2 == 1:
                bare_rates.append(self._bare_read(baseline, connections))
            for length in turn:
                result = self.run(
                    f"resume ours, {length:,} events", self.ours, ours[length], connections
                )
                rates[length].append(result.requests_per_s)
            if n % 2 == 0:
                bare_rates.append(self._bare_read(baseline, connections))
        bare_median = statistics.median(bare_rates)
        return ScenarioResult(
            slug="resume",
            title="Resume (GET /v1/me/session) by cart history length, against a bare read",
            command=self.options.command("resume"),
            figures=[
                Figure(
                    f"resume, a cart history of {length:,} events (GET /v1/me/session)",
                    "req/s",
                    rates[length],
                    "bare read",
                    bare_rates,
                    True,
                    GOAL_RESUME_RATE,
                )
                for length in lengths
            ],
            series=[
                Series(
                    "ours",
                    [(float(length), statistics.median(rates[length])) for length in lengths],
                ),
                Series("bare read", [(float(length), bare_median) for length in lengths]),
            ],
            x_label="events in the cart's history",
            y_label="req/s",
            about={
                "connections": connections,
                "customers_per_length": {str(k): len(v) for k, v in self.histories.items()},
            },
        )

    def _bare_read(self, baseline: list[RequestTemplate], connections: int) -> float:
        return self.run("resume bare read", self.baseline, baseline, connections).requests_per_s

    def action_by_history(self) -> ScenarioResult:
        lengths = list(self.histories)
        templates = {
            length: [
                self.add_item(subject, SEEDED_SKUS[n % len(SEEDED_SKUS)])
                for n, subject in enumerate(subjects)
            ]
            for length, subjects in self.histories.items()
        }
        p50: dict[int, list[float]] = {length: [] for length in lengths}
        p99: dict[int, list[float]] = {length: [] for length in lengths}
        added: dict[int, int] = dict.fromkeys(lengths, 0)
        for n in range(self.options.rounds):
            self.progress(f"action-by-history, round {n + 1} of {self.options.rounds}")
            turn = lengths[n % len(lengths) :] + lengths[: n % len(lengths)]
            for length in turn:
                result = self.run(
                    f"action ours, {length:,} events", self.ours, templates[length], 1
                )
                p50[length].append(result.p50_ms)
                p99[length].append(result.p99_ms)
                added[length] += result.completed
        shortest = lengths[0]
        base = f"ours at {shortest:,} events"
        figures: list[Figure] = []
        for quantile, series in (("p50", p50), ("p99", p99)):
            for length in lengths:
                own = length == shortest
                figures.append(
                    Figure(
                        f"{quantile} of one more cart action, a history of {length:,} events",
                        "ms",
                        series[length],
                        None if own else base,
                        [] if own else series[shortest],
                        False,
                        GOAL_HISTORY_LATENCY if length == lengths[-1] and not own else None,
                    )
                )
        return ScenarioResult(
            slug="action-by-history",
            title="Latency of one more cart action by history length (one client, sequential)",
            command=self.options.command("action-by-history"),
            figures=figures,
            series=[
                Series(q, [(float(length), statistics.median(s[length])) for length in lengths])
                for q, s in (("p50", p50), ("p99", p99))
            ],
            x_label="events in the cart's history",
            y_label="ms",
            about={
                "connections": 1,
                "customers_per_length": {str(k): len(v) for k, v in self.histories.items()},
                "events_added_per_customer": {
                    str(length): round(added[length] / len(self.histories[length]), 1)
                    for length in lengths
                },
            },
        )


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _drop(url: str, schemas: Sequence[str]) -> None:
    conn = await asyncpg.connect(url)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def measure(argv: Sequence[str], *, progress: Progress | None = None) -> list[ScenarioResult]:
    """Run the scenarios `argv` asks for (see the module's docstring) and return their results."""
    options = parse_options(argv)
    say = progress or _log
    url = database_url()
    venv_bin = Path(sys.executable).parent
    tag = secrets.token_hex(6)
    schema, bare_schema = f"bench_http_{tag}", f"bench_bare_{tag}"
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    env = {
        **os.environ,
        "CONTINUITY_DATABASE_URL": url,
        "CONTINUITY_DATABASE_SCHEMA": schema,
        "CONTINUITY_JWT_SECRET": secrets.token_urlsafe(48),
        "CONTINUITY_MASTER_KEY": master_key,
        "CONTINUITY_LOG_LEVEL": "WARNING",
        "CONTINUITY_RATE_LIMIT": str(RATE_LIMIT),
    }
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("CONTINUITY_")})
    needs_histories = {"resume", "action-by-history"} & set(options.scenarios)
    histories = (
        {length: [uuid4() for _ in range(count)] for length, count in options.histories}
        if needs_histories
        else {}
    )
    append_customers = [uuid4() for _ in range(options.customers)]
    bare_sessions = [uuid4() for _ in range(max(options.customers, 1))]
    postgres = asyncio.run(server_version(url))
    try:
        say(f"seeding {sum(len(v) for v in histories.values())} carts in schema {schema}")
        started = time.perf_counter()
        asyncio.run(seed(settings, url, Keyring.from_text(master_key), histories))
        say(f"seeded in {time.perf_counter() - started:.1f} s")
        asyncio.run(bare.prepare(url, bare_schema, bare_sessions))
        workers = ["--workers", str(options.workers)] if options.workers > 1 else []
        ours_port, bare_port = free_port(), free_port()
        with ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-http-")))
            stack.enter_context(
                running(
                    "continuity",
                    [
                        str(venv_bin / "continuity"),
                        "run",
                        "--host",
                        HOST,
                        "--port",
                        str(ours_port),
                        *workers,
                    ],
                    env,
                    "/ready",
                    workdir,
                )
            )
            stack.enter_context(
                running(
                    "bare",
                    [
                        sys.executable,
                        "-m",
                        "bench.bare",
                        "--database-url",
                        url,
                        "--schema",
                        bare_schema,
                        "--host",
                        HOST,
                        "--port",
                        str(bare_port),
                        "--workers",
                        str(options.workers),
                    ],
                    env,
                    "/bare/health",
                    workdir,
                )
            )
            say(f"servers up: ours on port {ours_port}, bare on port {bare_port}")
            load = stack.enter_context(load_generator())
            bench = Bench(
                options,
                load,
                ours_port,
                bare_port,
                env["CONTINUITY_JWT_SECRET"],
                settings.jwt_audience,
                append_customers,
                histories,
                bare_sessions,
                say,
            )
            results = [
                getattr(bench, scenario.replace("-", "_"))() for scenario in options.scenarios
            ]
    finally:
        asyncio.run(_drop(url, [schema, bare_schema]))
    about = about_the_run(
        postgres,
        "uvloop",
        machine=platform.machine(),
        processor=_processor(),
        workers=options.workers,
        rounds=options.rounds,
        seconds=options.seconds,
        warmup=options.warmup,
        load_generator="bench.load: raw HTTP/1.1 keep-alive on uvloop, in its own process",
        bare_auth="none (the bare endpoints check no token)",
    )
    flagged = [run for run in bench.runs if run["failed"] or not run["requests_per_s"]]
    finished = []
    for result in results:
        runs = [r for r in bench.runs if r["run"].startswith(_run_prefix(result.slug))]
        mine = [r for r in flagged if r in runs]
        finished.append(
            msgspec.structs.replace(
                result,
                about={
                    **about,
                    **result.about,
                    "load_generator_cpu_max": max(r["load_generator_cpu"] for r in runs),
                    "flagged_runs": mine,
                    "runs": runs,
                },
            )
        )
    # Returned as the JSON gives them back (tuples in `about` become lists), so both agree.
    encoded = msgspec.json.encode(finished)
    if options.json is not None:
        options.json.write_bytes(msgspec.json.format(encoded))
    return msgspec.json.decode(encoded, type=list[ScenarioResult])


def _processor() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run_prefix(slug: str) -> str:
    return {"http-append": "http-append", "resume": "resume", "action-by-history": "action"}[slug]


def _number(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    text = f"{value:,.0f}" if unit == "req/s" else f"{value:,.2f}"
    return text


def table(results: Sequence[ScenarioResult]) -> str:
    """A readable table per scenario: ours, baseline, ratio, goal and whether it is met."""
    lines: list[str] = []
    for result in results:
        lines += ["", f"{result.slug}: {result.title}", f"  {result.command}"]
        header = ("figure", "unit", "ours", "baseline", "ratio", "goal", "met", "ours, every round")
        rows = [header]
        for figure in result.figures:
            goal = "-"
            if figure.goal is not None:
                goal = f"{'>=' if figure.higher_is_better else '<='} {figure.goal:g}x"
            met = {None: "-", True: "yes", False: "NO"}[figure.met]
            rows.append(
                (
                    figure.what,
                    figure.unit,
                    _number(figure.ours, figure.unit),
                    f"{_number(figure.baseline, figure.unit)} ({figure.baseline_name})"
                    if figure.baseline_name
                    else "-",
                    f"{figure.ratio:.2f}x" if figure.ratio is not None else "-",
                    goal,
                    met,
                    ", ".join(_number(v, figure.unit) for v in figure.rounds),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            lines.append(("  " + "  ".join(cells)).rstrip())
        flagged = result.about.get("flagged_runs")
        if isinstance(flagged, list) and flagged:
            lines.append(
                f"  FLAGGED: {len(flagged)} run(s) had failed requests: see about.flagged_runs"
            )
        lines.append(
            f"  load generator: at most {result.about.get('load_generator_cpu_max', 0):.0%}"
            " of one core"
        )
    return "\n".join(lines)


def main() -> None:
    results = measure(sys.argv[1:])
    print(table(results))
    if any(result.about.get("flagged_runs") for result in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
