"""The HTTP benchmark's parts work: requests are counted, failures are never counted as
throughput, and results survive JSON. Correctness only: timings are measured in bench/ alone."""

from __future__ import annotations

import asyncio
import math
import os
import sys
from pathlib import Path
from uuid import uuid4

import asyncpg
import msgspec
import pytest

from bench import bare
from bench.http import HOST, ROOT, SCENARIOS, free_port, measure, running
from bench.load import LoadPlan, RequestTemplate, load_generator
from bench.results import ScenarioResult


async def _count_events(url: str, schema: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(f'SELECT count(*) FROM "{schema}".events')
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()
    return count


def test_the_load_generator_counts_every_answer(database_url: str, tmp_path: Path) -> None:
    schema = f"test_bare_{uuid4().hex[:12]}"
    known = uuid4()
    asyncio.run(bare.prepare(database_url, schema, [known]))
    port = free_port()
    command = [sys.executable, "-m", "bench.bare", "--database-url", database_url]
    command += ["--schema", schema, "--host", HOST, "--port", str(port)]
    body = b'{"sku": "SKU-1", "name": "Mug", "unit_price": "12.50"}'
    append = RequestTemplate("POST", "/bare/events", (("Content-Type", "application/json"),), body)
    try:
        with (
            running("bare", command, dict(os.environ), "/bare/health", tmp_path) as server,
            load_generator() as load,
        ):
            appended = load.run(LoadPlan(HOST, server.port, [append], 4, 1.0, 0.2))
            read = RequestTemplate("GET", f"/bare/session/{known}")
            missing = RequestTemplate("GET", f"/bare/session/{uuid4()}")
            mixed = load.run(LoadPlan(HOST, server.port, [read, missing], 2, 0.5, 0.1))
    finally:
        inserted = asyncio.run(_count_events(database_url, schema))

    assert appended.ok > 0
    assert not appended.flagged, appended.samples
    assert appended.statuses == {200: appended.ok}
    assert inserted == appended.completed >= appended.ok
    assert appended.p50_ms <= appended.p99_ms
    assert appended.cpu_share >= 0

    assert mixed.ok > 0
    assert mixed.flagged
    assert mixed.failed == mixed.statuses[404]
    assert mixed.statuses[200] == mixed.ok
    assert abs(mixed.ok - mixed.failed) <= 4, "the two templates take turns"
    assert mixed.samples[0].startswith("HTTP 404")


def test_measure_runs_every_scenario_against_the_real_server(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTINUITY_BENCH_DATABASE_URL", database_url)
    monkeypatch.chdir(ROOT)
    steps: list[str] = []
    written = tmp_path / "results.json"
    tiny = "--rounds 1 --seconds 0.5 --warmup 0.2 --connections 2 --customers 3"
    results = measure(
        [*tiny.split(), "--histories", "3:2,12:2", "--json", str(written)],
        progress=steps.append,
    )

    assert [r.slug for r in results] == list(SCENARIOS)
    assert steps
    for result in results:
        assert result.about["flagged_runs"] == [], result.about["flagged_runs"]
        assert result.command.startswith(
            ".venv/bin/python -m bench.http --scenarios " + result.slug
        )
        for figure in result.figures:
            assert len(figure.rounds) == 1
            assert all(v > 0 and math.isfinite(v) for v in figure.rounds + figure.baseline_rounds)
    resume = results[1]
    assert [x for x, _ in resume.series[0].points] == [3.0, 12.0]
    assert msgspec.json.decode(written.read_bytes(), type=list[ScenarioResult]) == results
