"""Crypto-shredding: destroying a subject's keys makes every copy of their data unreadable."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from aggregates.cart import Cart
from continuity.erasure import shred_keys, shred_subject
from continuity.errors import SubjectErased
from continuity.runtime import Runtime
from privacy.master_key import Keyring
from privacy.vault import KeyVault
from tests.helpers import MUG, TokenFactory

pytestmark = pytest.mark.anyio


async def test_a_shredded_subject_reads_back_as_placeholders_and_others_are_untouched(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    erased, kept = uuid4(), uuid4()
    for subject in (erased, kept):
        response = await client.post(
            "/v1/me/cart/items", json=MUG, headers={**auth(subject), "X-Channel": "app"}
        )
        assert response.status_code == 200
    erased_cart = UUID((await client.get("/v1/me/cart", headers=auth(erased))).json()["cart_id"])
    for _ in range(1000):  # the timeline's runner applies the item added in the background
        if (await runtime.timeline.page(runtime.pool, erased)).entries:
            break
        await asyncio.sleep(0.02)

    certificate = await shred_subject(runtime.store, runtime.vault, erased)
    assert certificate.subject_id == erased
    assert certificate.key_versions_destroyed == [1]
    assert certificate.events_unreadable == 2
    assert certificate.projection_rows_deleted == 2, "the session's row, the timeline's one"
    assert not certificate.already_erased
    assert [(s.stream_id, s.events) for s in certificate.streams] == [(erased_cart, 2)]
    assert certificate.acknowledged_at is not None
    assert certificate.purged_at is not None
    assert certificate.erased_at <= certificate.acknowledged_at <= certificate.purged_at

    records = await runtime.store.select_events(erased_cart)
    envelopes = await runtime.mapper.to_envelopes(records)
    assert [e.erased for e in envelopes] == [True, True]
    assert [e.topic.rsplit(".", 1)[-1] for e in envelopes] == ["Opened", "ItemAdded"]
    assert {e.channel for e in envelopes} == {"app"}
    assert all(e.recorded_at is not None and e.meta is None for e in envelopes)
    with pytest.raises(SubjectErased):
        await runtime.repository.load(erased_cart, Cart)

    for response in (
        await client.get("/v1/me/session", headers=auth(erased)),
        await client.get("/v1/me/cart", headers=auth(erased)),
        await client.post("/v1/me/cart/items", json=MUG, headers=auth(erased)),
        await client.patch("/v1/me/cart/items/MUG-1", json={"quantity": 2}, headers=auth(erased)),
        await client.delete("/v1/me/cart/items/MUG-1", headers=auth(erased)),
        await client.post("/v1/me/cart/checkout", headers=auth(erased)),
    ):
        assert response.status_code == 410, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert (
        await runtime.pool.fetchval(
            "SELECT count(*) FROM subject_keys WHERE subject_id = $1", erased
        )
        == 0
    ), "a write after erasure must not create a new key"

    theirs = await client.get("/v1/me/cart", headers=auth(kept))
    assert theirs.status_code == 200
    assert theirs.json()["items"][0]["name"] == "Blue mug"

    again = await shred_subject(runtime.store, runtime.vault, erased)
    assert again.already_erased
    assert again.erased_at == certificate.erased_at
    assert again.events_unreadable == certificate.events_unreadable


async def test_other_processes_drop_the_key_from_their_cache(
    pool: asyncpg.Pool, schema: str, keyring: Keyring, runtime: Runtime
) -> None:
    subject = uuid4()
    other_process = KeyVault(pool, schema, keyring)
    await other_process.start()
    try:
        key = await other_process.key_for_writing(subject)
        assert await other_process.keys_for_reading([(subject, key.version)])
        await shred_subject(runtime.store, runtime.vault, subject)
        for _ in range(100):
            if not await other_process.keys_for_reading([(subject, key.version)]):
                break
            await asyncio.sleep(0.02)
        assert await other_process.keys_for_reading([(subject, key.version)]) == {}
        with pytest.raises(SubjectErased):
            await other_process.key_for_writing(subject)
    finally:
        await other_process.close()


async def test_an_erasure_cut_off_after_the_keys_went_is_finished_by_the_next_call(
    client: httpx.AsyncClient, auth: TokenFactory, runtime: Runtime
) -> None:
    """The keys go first; the purge comes after. A crash in between leaves the data unreadable
    and the rows behind, and erasing again counts and purges them."""
    subject = uuid4()
    assert (await client.post("/v1/me/cart/items", json=MUG, headers=auth(subject))).is_success
    shredded = await shred_keys(runtime.store, runtime.vault, subject)
    assert not shredded.already_erased
    assert await runtime.pool.fetchval(
        "SELECT events_unreadable IS NULL FROM erased_subjects WHERE subject_id = $1", subject
    ), "not counted before the purge"
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM session_views WHERE subject_id = $1", subject
    )
    assert (await client.get("/v1/me/cart", headers=auth(subject))).status_code == 410

    again = await shred_subject(runtime.store, runtime.vault, subject)
    assert again.already_erased
    assert again.erased_at == shredded.erased_at
    assert again.events_unreadable == 2
    assert again.projection_rows_deleted >= 1
    assert (
        await runtime.pool.fetchval(
            "SELECT events_unreadable FROM erased_subjects WHERE subject_id = $1", subject
        )
        == 2
    )
    assert not await runtime.pool.fetchval(
        "SELECT count(*) FROM session_views WHERE subject_id = $1", subject
    )
