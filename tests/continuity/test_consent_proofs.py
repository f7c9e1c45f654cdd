"""Consent proofs are written in the append's own transaction: a choice whose append is refused
leaves no proof, and a retried request leaves one."""

from __future__ import annotations

from uuid import uuid4

import pytest

from aggregates.consent import Consent
from aggregates.metadata import EventMeta
from continuity.errors import ConcurrencyConflict
from continuity.repository import IdempotencyKey
from continuity.runtime import Runtime

pytestmark = pytest.mark.anyio

PHONE = EventMeta("app", "phone")


async def test_a_refused_append_leaves_no_proof_and_a_retry_leaves_one(runtime: Runtime) -> None:
    subject = uuid4()
    first, second = Consent(subject_id=subject), Consent(subject_id=subject)
    first.record("marketing", True, "2026-01", "device")
    second.record("analytics", True, "2026-01", "device")
    key = IdempotencyKey(subject, uuid4())
    await runtime.repository.save(first, subject, PHONE, key, b"first")
    with pytest.raises(ConcurrencyConflict):
        await runtime.repository.save(
            second, subject, PHONE, IdempotencyKey(subject, uuid4()), b"2"
        )
    again = Consent(subject_id=subject)
    again.record("marketing", True, "2026-01", "device")
    await runtime.repository.save(again, subject, PHONE, key, b"first")  # a retry: no new proof
    proofs = await runtime.consents.history(subject)
    assert [(p.purpose, p.given, p.channel, p.source) for p in proofs] == [
        ("marketing", True, "app", "device")
    ]
    position = await runtime.pool.fetchval(
        "SELECT position FROM events WHERE stream_id = $1 AND version = 2",
        Consent.create_id(subject),
    )
    assert proofs[0].position == position
