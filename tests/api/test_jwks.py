"""The IdP's key cache against a real JWKS endpoint: rotation, expiry, outages, and no refetch
storm; fetches run in a worker thread, never on the event loop."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from api.jwks import JwksKeys
from tests.idp import JwksServer, SigningKey

pytestmark = pytest.mark.anyio

ALL = ("RS256", "ES256", "EdDSA")


class Clock:
    """Monotonic time that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with JwksServer([SigningKey.generate("EdDSA")]) as server:
        yield server


def keys_for(server: JwksServer, clock: Clock) -> JwksKeys:
    return JwksKeys(server.url, ALL, min_interval=30, max_age=300, clock=clock)


async def test_a_rotated_key_is_fetched_once_the_interval_has_passed(server: JwksServer) -> None:
    clock = Clock()
    keys = keys_for(server, clock)
    first = server.keys[0]
    assert await keys.refresh()
    assert (await keys.get(first.kid)) is not None
    rotated = SigningKey.generate("ES256")
    server.keys.append(rotated)

    clock.now += 10
    assert await keys.get(rotated.kid) is None
    assert server.requests == 1
    clock.now += 25
    found = await keys.get(rotated.kid)
    assert found is not None
    assert found.algorithm_name == "ES256"
    assert server.requests == 2


async def test_unknown_kids_cost_one_fetch_per_interval(server: JwksServer) -> None:
    clock = Clock()
    keys = keys_for(server, clock)
    await keys.refresh()
    for n in range(50):
        clock.now += 1
        assert await keys.get(f"made-up-{n}") is None
    assert server.requests == 2  # at 1000 (refresh) and at 1030; never per kid


async def test_concurrent_requests_share_one_fetch(server: JwksServer) -> None:
    server.delay = 0.2
    keys = keys_for(server, Clock())
    kid = server.keys[0].kid
    found = []

    async def get() -> None:
        found.append(await keys.get(kid))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(get)
    assert server.requests == 1
    assert all(k is not None and k.key_id == kid for k in found)


async def test_a_fetch_does_not_block_the_event_loop(server: JwksServer) -> None:
    server.delay = 0.3
    keys = keys_for(server, Clock())
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        assert await keys.refresh()
        tg.cancel_scope.cancel()
    assert ticks >= 5  # the loop ran while the fetch waited 0.3 s in its thread


async def test_keys_are_refetched_when_old_and_a_removed_key_goes(server: JwksServer) -> None:
    clock = Clock()
    keys = keys_for(server, clock)
    old = server.keys[0]
    await keys.refresh()
    server.keys = [SigningKey.generate("RS256")]
    clock.now += 299
    assert await keys.get(old.kid) is not None  # still fresh: served from memory
    assert server.requests == 1
    clock.now += 2
    assert await keys.get(old.kid) is None  # stale: refetched, and the IdP dropped it
    assert server.requests == 2


async def test_an_outage_keeps_the_known_keys_and_is_not_hammered(server: JwksServer) -> None:
    clock = Clock()
    keys = keys_for(server, clock)
    kid = server.keys[0].kid
    await keys.refresh()
    server.status = 503
    clock.now += 301
    for _ in range(20):
        assert await keys.get(kid) is not None
    assert server.requests == 2  # one failed attempt; the next waits out the interval
    server.status = 200
    clock.now += 30
    assert await keys.get(kid) is not None
    assert server.requests == 3


async def test_keys_for_other_algorithms_are_ignored(server: JwksServer) -> None:
    keys = JwksKeys(server.url, ("RS256",), clock=Clock())
    assert not await keys.refresh()  # the server has only an EdDSA key
    assert await keys.get(server.keys[0].kid) is None


async def test_an_unreachable_jwks_url_is_no_key_not_an_error() -> None:
    with JwksServer() as gone:
        url = gone.url
    keys = JwksKeys(url, ALL, timeout=1, clock=Clock())
    assert not await keys.refresh()
    assert await keys.get("any") is None
