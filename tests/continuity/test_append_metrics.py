"""Every append is counted by outcome, with its events and duration, in the app's metrics."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from continuity.errors import ConcurrencyConflict, EventIdReused
from continuity.metrics import Metrics
from continuity.store import EventStore
from tests.continuity.test_store import new_event

pytestmark = pytest.mark.anyio


def count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_appends_are_counted_by_outcome(pool: asyncpg.Pool, schema: str) -> None:
    metrics = Metrics()
    store = EventStore(pool, schema, metrics.observe_append)
    try:
        stream = uuid4()
        batch = [new_event(stream, 1), new_event(stream, 2)]
        await store.append(batch, {stream: 0})
        await store.append(batch, {stream: 0})  # an identical retry
        with pytest.raises(ConcurrencyConflict):
            await store.append([new_event(stream, 2)], {stream: 1})
        with pytest.raises(EventIdReused):
            await store.append([new_event(uuid4(), 1, event_id=batch[0].event_id)])
    finally:
        await store.aclose()
    outcomes = {
        outcome: count(metrics, "continuity_appends_total", outcome=outcome)
        for outcome in ["committed", "replayed", "conflict", "reused", "failed"]
    }
    assert outcomes == {"committed": 1, "replayed": 1, "conflict": 1, "reused": 1, "failed": 0}
    assert count(metrics, "continuity_appended_events_total") == 2
    assert count(metrics, "continuity_append_duration_seconds_count", outcome="committed") == 1
