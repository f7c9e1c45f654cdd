"""An erasure answered is an erasure everywhere: every live API process has dropped the
subject's keys from its cache before `shred_subject` returns, and the certificate names them."""

from __future__ import annotations

from uuid import uuid4

import pytest

from continuity.erasure import shred_subject
from continuity.runtime import Runtime
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
            added = await client.post("/v1/me/cart/items", json=MUG, headers=auth(subject))
            assert added.status_code == 200, added.text
        key = await second.vault.key_for_writing(subject)
        assert await second.vault.keys_for_reading([(subject, key.version)])

        certificate = await shred_subject(first.store, first.vault, subject)

        processes = {first.process.process_id, second.process.process_id}
        assert processes <= set(certificate.processes_acknowledged)
        assert certificate.processes_missing == []
        for runtime in (first, second):  # at once, in both: no key in any cache
            assert await runtime.vault.keys_for_reading([(subject, key.version)]) == {}
        async with client_of(two) as client:
            gone = await client.get("/v1/me/session", headers=auth(subject))
            assert gone.status_code == 410
            refused = await client.post("/v1/me/cart/items", json=MUG, headers=auth(subject))
            assert refused.status_code == 410
