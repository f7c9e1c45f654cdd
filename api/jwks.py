"""An identity provider's signing keys from its JWKS URL, cached, fetched off the event loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import anyio
import anyio.to_thread
from jwt import PyJWK, PyJWKClient, PyJWTError

log = logging.getLogger("continuity.auth")


class JwksKeys:
    """Keys by `kid`, served from memory.

    `PyJWKClient` fetches and parses the set, with blocking urllib, so a fetch runs in a worker
    thread. The set is fetched at startup (`refresh`), again on use once it is older than
    `max_age`, and when a token names a `kid` the set does not have (the IdP rotated its keys).
    Whatever the reason and the outcome, fetches are at least `min_interval` seconds apart, so
    tokens with made-up `kid`s cost at most one fetch per interval; concurrent requests wait for
    the one fetch in flight. A failed fetch keeps the keys already known.
    """

    def __init__(
        self,
        url: str,
        algorithms: Iterable[str],
        *,
        min_interval: float = 30.0,
        max_age: float = 300.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._algorithms = frozenset(algorithms)
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
        self._min_interval = min_interval
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = anyio.Lock()
        self.fetches = 0
        """Fetch attempts so far."""

    async def get(self, kid: str) -> PyJWK | None:
        """The key named `kid`, fetching the set first if it lacks `kid` or is stale and the
        minimum interval since the last fetch has passed."""
        key = self._keys.get(kid)
        if key is not None and not self._stale():
            return key
        async with self._lock:
            if (kid not in self._keys or self._stale()) and self._may_fetch():
                await self._fetch()
        return self._keys.get(kid)

    async def refresh(self) -> bool:
        """Fetch now unless the last fetch was under `min_interval` ago; True if keys are
        known afterwards."""
        async with self._lock:
            if self._may_fetch():
                await self._fetch()
        return bool(self._keys)

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age

    def _may_fetch(self) -> bool:
        last = self._attempted_at
        return last is None or self._clock() - last >= self._min_interval

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            keys = await anyio.to_thread.run_sync(self._client.get_signing_keys, True)
        except (PyJWTError, ValueError, OSError) as exc:  # ValueError: a body that is not JSON
            log.warning("identity provider keys: fetching %s failed: %s", self.url, exc)
            return
        usable = {k.key_id: k for k in keys if k.key_id and k.algorithm_name in self._algorithms}
        if not usable:
            log.warning("identity provider keys: %s has none for the accepted algorithms", self.url)
            return
        self._keys = usable
        self._fetched_at = self._clock()
