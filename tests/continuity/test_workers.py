"""`continuity run --workers 2` as real processes: both workers answer, on one database, with
one set of metrics; an erasure reaches the key cache of each; SIGTERM to the parent stops the
workers and the embedded database.

Which worker answered a request is read from the JSON access log: every line carries its
process's `pid` and the request's id, which the test chooses (`X-Request-ID`)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from uvicorn.config import STARTUP_FAILURE

from api.auth import issue_token
from continuity import logs, metrics
from continuity.cli import main
from tests.continuity.test_cli import drop_schema
from tests.helpers import MUG, SECRET
from tests.server import server_env, server_process

WORKERS = 2
BATCH = 16
"""Requests sent at once, each on a connection of its own, so that both workers take some."""
ROUNDS = 30
"""Batches sent at most before a test gives up on hearing from every worker."""
LOG_WAIT = 10.0
"""Seconds to wait for a worker to write the access log line of an answer already received."""
RESTART_WAIT = 30.0
"""Seconds to wait for the parent to start a worker in place of a dead one."""


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


@dataclass
class Workers:
    """A running `continuity run --workers 2` and what its workers logged."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def events(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def answered_by(self, request_ids: set[str]) -> dict[str, int]:
        """The pid of the worker that answered each request, from the access log."""
        deadline = time.monotonic() + LOG_WAIT
        while True:
            found = {
                str(e["request_id"]): int(str(e["pid"]))
                for e in self.events()
                if e["logger"] == "continuity.access" and e.get("request_id") in request_ids
            }
            if len(found) == len(request_ids) or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def spread(
        self, send: Callable[[httpx.Client, str], httpx.Response], rounds: int = ROUNDS
    ) -> list[tuple[int, httpx.Response]]:
        """Send batches of concurrent requests, each on a new connection, until every worker
        answered some; each answer with the pid of its worker."""
        answers: list[tuple[int, httpx.Response]] = []

        def one(_: int) -> tuple[str, httpx.Response]:
            rid = uuid4().hex
            with httpx.Client(base_url=self.base, headers={"X-Request-ID": rid}) as client:
                return rid, send(client, rid)

        with ThreadPoolExecutor(BATCH) as threads:
            for _ in range(rounds):
                batch = dict(threads.map(one, range(BATCH)))
                pids = self.answered_by(set(batch))
                answers += [(pids[rid], answer) for rid, answer in batch.items()]
                if len({pid for pid, _ in answers}) == WORKERS:
                    break
        return answers


@pytest.fixture(scope="module")
def workers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    tmp = tmp_path_factory.mktemp("workers")
    schema = f"test_workers_{uuid4().hex[:12]}"
    env = server_env(
        database_url,
        schema,
        tmp / "data",
        workers=str(WORKERS),
        log_format="json",
        rate_limit="0",
    )
    out = tmp / "out.txt"
    try:
        with server_process(env, out) as (base, process):
            yield Workers(base, process, out.with_name("out.txt.err"), env)
    finally:
        drop_schema(database_url, schema)


def bearer(customer: UUID, device: str) -> dict[str, str]:
    token = issue_token(SECRET, customer, "customer", device, timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}


def session_of(customer: UUID) -> Callable[[httpx.Client, str], httpx.Response]:
    headers = bearer(customer, "laptop")
    return lambda client, _: client.get("/v1/me/session", headers=headers)


def test_each_worker_is_a_child_of_the_parent_and_answers(workers: Workers) -> None:
    answers = workers.spread(lambda client, _: client.get("/health"))
    pids = {pid for pid, _ in answers}
    assert len(pids) == WORKERS
    assert workers.process.pid not in pids
    assert {parent_of(pid) for pid in pids} == {workers.process.pid}
    assert "workers   2 processes" in workers.log.with_name("out.txt").read_text()


def test_a_cart_written_through_one_worker_is_read_through_the_other(workers: Workers) -> None:
    customer = uuid4()
    rid = uuid4().hex
    added = httpx.post(
        f"{workers.base}/v1/me/cart/items",
        json=MUG,
        headers={**bearer(customer, "phone"), "X-Request-ID": rid},
    )
    assert added.status_code == 200, added.text
    writer = workers.answered_by({rid})[rid]
    reads = workers.spread(session_of(customer))
    from_the_other = [answer for pid, answer in reads if pid != writer]
    assert from_the_other
    for answer in from_the_other:
        assert answer.status_code == 200, answer.text
        assert [item["sku"] for item in answer.json()["cart"]["items"]] == [MUG["sku"]]


def session_reads(scrape: httpx.Response) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
        if s.name == "continuity_http_requests_total" and s.labels["route"] == "/v1/me/session"
    )


def test_metrics_from_any_worker_count_the_requests_of_every_worker(workers: Workers) -> None:
    before = session_reads(httpx.get(f"{workers.base}/metrics"))
    reads = workers.spread(session_of(uuid4()))
    assert {answer.status_code for _, answer in reads} == {200}
    scrapes = workers.spread(lambda client, _: client.get("/metrics"))
    pids = {str(pid) for pid, _ in scrapes}
    assert len(pids) == WORKERS
    for pid, scrape in scrapes:
        assert session_reads(scrape) >= before + len(reads), f"worker {pid} missed some"
        pools = {
            s.labels["pid"]
            for family in text_string_to_metric_families(scrape.text)
            for s in family.samples
            if s.name == "continuity_db_pool_max_connections"
        }
        assert pools == pids


def test_an_erasure_through_the_cli_reaches_every_worker(workers: Workers) -> None:
    customer = uuid4()
    phone = bearer(customer, "phone")
    added = httpx.post(f"{workers.base}/v1/me/cart/items", json=MUG, headers=phone)
    assert added.status_code == 200, added.text
    before = workers.spread(session_of(customer))  # each worker read the cart: its key cached
    assert {answer.status_code for _, answer in before} == {200}
    pids = {pid for pid, _ in before}

    erased = CliRunner().invoke(main, ["erase-subject", str(customer), "--yes"], env=workers.env)
    assert erased.exit_code == 0, erased.output

    deadline = time.monotonic() + LOG_WAIT
    heard: set[int] = set()
    while heard != pids and time.monotonic() < deadline:
        heard = {
            int(str(e["pid"]))
            for e in workers.events()
            if e["logger"] == "privacy.vault" and str(customer) in str(e["message"])
        }
        time.sleep(0.1)
    assert heard == pids  # each worker's vault heard the erasure and dropped the key
    after = workers.spread(session_of(customer))
    assert {pid for pid, _ in after} == pids
    assert {answer.status_code for _, answer in after} == {410}
    writes = workers.spread(
        lambda client, _: client.post("/v1/me/cart/items", json=MUG, headers=phone)
    )
    assert {pid for pid, _ in writes} == pids
    assert {answer.status_code for _, answer in writes} == {410}


def pool_pids(base: str) -> set[int]:
    scrape = httpx.get(f"{base}/metrics")
    return {
        int(s.labels["pid"])
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
        if s.name == "continuity_db_pool_max_connections"
    }


def test_a_dead_worker_is_replaced_and_sigterm_stops_every_worker_and_the_database(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = {
        "CONTINUITY_DATABASE_URL": "",  # the embedded database, started once by the parent
        "CONTINUITY_DATA_DIR": str(data),
        "CONTINUITY_WORKERS": str(WORKERS),
        "CONTINUITY_LOG_FORMAT": "json",
        "CONTINUITY_RATE_LIMIT": "0",
        "CONTINUITY_MASTER_KEY": "",
        "CONTINUITY_JWT_SECRET": "",
    }
    out = tmp_path / "out.txt"
    with server_process(env, out, timeout=120) as (base, process):
        running = Workers(base, process, out.with_name("out.txt.err"), env)
        pids = {pid for pid, _ in running.spread(lambda client, _: client.get("/health"))}
        assert len(pids) == WORKERS
        postgres = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
        assert alive(postgres)
        assert [p.name for p in (data / "metrics").iterdir()]  # the shared metrics of this run

        dead = pids.pop()
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + RESTART_WAIT
        while len(pids) < WORKERS and time.monotonic() < deadline:
            answering = running.spread(lambda client, _: client.get("/health"), rounds=1)
            pids |= {pid for pid, _ in answering} - {dead}
        assert len(pids) == WORKERS  # the parent started a worker in place of the dead one
        assert {parent_of(pid) for pid in pids} == {process.pid}
        assert pool_pids(base) == pids  # the dead worker's pool left the metrics

        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(30) == 0
    assert not [pid for pid in pids | {dead} if alive(pid)]
    assert not alive(postgres)
    assert not list((data / "metrics").iterdir())
    for name in ("master.key", "jwt.secret"):  # created once, by the parent
        assert (data / name).stat().st_mode & 0o777 == 0o600


def test_text_lines_of_workers_name_their_process_after_the_app_configures_logging() -> None:
    stream = io.StringIO()
    try:
        logs.configure("INFO", "text", stream, with_pid=True)  # what a worker does first
        logs.configure("INFO", "text", stream)  # what the app does when it starts
        logging.getLogger("continuity.test").info("hello")
    finally:
        logs.configure("INFO", "text", with_pid=False)
    assert f"INFO [{os.getpid()}] continuity.test: hello" in stream.getvalue()


def test_a_crashed_workers_pool_series_are_dropped_by_the_next_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # a pid that no longer runs
    for name in (f"gauge_liveall_{gone.pid}.db", f"gauge_liveall_{os.getpid()}.db"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(metrics, "SHARED_DIR", str(tmp_path))
    metrics.Metrics.forget_dead_workers()
    assert [p.name for p in tmp_path.iterdir()] == [f"gauge_liveall_{os.getpid()}.db"]


def test_a_worker_that_cannot_start_exits_as_a_start_up_failure(tmp_path: Path) -> None:
    """So that the parent stops the server instead of starting the worker again and again."""
    secret = tmp_path / "jwt.secret"
    secret.write_text("s" * 40)
    secret.chmod(0o644)  # made readable by others after the parent checked it
    env = {**os.environ, "CONTINUITY_DATA_DIR": str(tmp_path), "CONTINUITY_JWT_SECRET": ""}
    worker = subprocess.run(
        [sys.executable, "-c", "from api.worker import app; app()"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert worker.returncode == STARTUP_FAILURE
    assert "this worker cannot start" in worker.stderr
    assert "chmod 600" in worker.stderr
