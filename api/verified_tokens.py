"""Tokens verified recently, so a device's next request skips the signature check.

Verifying a JWT (three decodes and an HMAC or a public-key check) was the largest single cost of
a request. A token is a fixed string, so once its signature, issuer and audience check out they
check out again; what changes is time. An entry is used only before the token's `exp` and for at
most `ttl` seconds after it was verified, so a key an identity provider withdraws stops being
trusted within `ttl`. Bounded: the least recently used entries go first.

What a caller makes of a token's claims (the request's user) can be attached to its entry and
lives exactly as long as the entry: authentication then costs one lookup per request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TTL = 60.0
SIZE = 10_000


@dataclass(slots=True)
class _Entry:
    until: float
    claims: dict[str, Any]
    attached: object | None = None


class VerifiedTokens:
    def __init__(
        self, ttl: float = TTL, size: int = SIZE, clock: Callable[[], float] = time.time
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, token: str) -> dict[str, Any] | None:
        """The claims verified for `token`, if still good; a copy the caller may change."""
        entry = self._live(token)
        return None if entry is None else dict(entry.claims)

    def attached(self, token: str) -> object | None:
        """What `attach` left on `token`'s entry, if the entry is still good."""
        entry = self._live(token)
        return None if entry is None else entry.attached

    def attach(self, token: str, value: object) -> None:
        """Keep `value` (immutable, shared by every later request) with `token`'s entry, if
        it has one."""
        entry = self._entries.get(token)
        if entry is not None:
            entry.attached = value

    def _live(self, token: str) -> _Entry | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if self.clock() >= entry.until:
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return entry

    def put(self, token: str, claims: dict[str, Any]) -> None:
        expires = claims.get("exp")
        until = self.clock() + self.ttl
        if isinstance(expires, int | float):
            until = min(until, float(expires))
        self._entries[token] = _Entry(until, dict(claims))
        self._entries.move_to_end(token)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
