"""An erasure answered is an erasure everywhere: every live API process has dropped the
subject's keys from its cache before `shred_subject` returns, and the certificate names them."""

from __future__ import annotations

from uuid import uuid4

import pytest

from continuity import snapshots
from continuity.erasure import shred_subject
from continuity.runtime import Runtime
from continuity.timeline import TIMELINE
from tests.conftest import AppFactory, client_of
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio


async def test_every_process_drops_the_key_before_the_erasure_is_answered(
    started: AppFactory, auth: TokenFactory
) -> None:
    subject = uuid4()
    async with started() as one, started() as two:
        first: Runtime = one.state.runtime
        second: Runtime = two.state.runtime
        async with client_of(two) as client:  # the second process writes: it caches the key
            for quantity in range(1, snapshots.EVERY + 2):  # enough to leave a snapshot behind
                added = await client.post(
                    "/v1/me/cart/items", json={**MUG, "quantity": 1}, headers=auth(subject)
                )
                assert added.status_code == 200, (quantity, added.text)
        assert await second.pool.fetchval(
            "SELECT count(*) FROM snapshots WHERE subject_id = $1", subject
        ), "the cart's snapshot"
        cart = await second.pool.fetchval(
            "SELECT DISTINCT stream_id FROM events WHERE subject_id = $1", subject
        )
        key = await second.vault.key_for_writing(subject)
        assert await second.vault.keys_for_reading([(subject, key.version)])

        certificate = await shred_subject(first.store, first.vault, subject)

        processes = {first.process.process_id, second.process.process_id}
        assert processes <= set(certificate.processes_acknowledged)
        assert certificate.processes_missing == []
        for runtime in (first, second):  # at once, in both: no key in any cache
            assert await runtime.vault.keys_for_reading([(subject, key.version)]) == {}
        for runtime in (first, second):  # every event a placeholder, through either process
            envelopes = await runtime.mapper.to_envelopes(await runtime.store.select_events(cart))
            assert len(envelopes) == certificate.events_unreadable
            assert all(envelope.erased for envelope in envelopes)
            for app in (one, two):
                async with client_of(app) as client:
                    gone = await client.get("/v1/me/session", headers=auth(subject))
                    assert gone.status_code == 410
                    refused = await client.post(
                        "/v1/me/cart/items", json=MUG, headers=auth(subject)
                    )
                    assert refused.status_code == 410
        assert certificate.snapshots_deleted == 1
        for table in ("snapshots", "session_views", TIMELINE, "subject_keys"):
            left = await first.pool.fetchval(
                f"SELECT count(*) FROM {table} WHERE subject_id = $1", subject
            )
            assert left == 0, table
