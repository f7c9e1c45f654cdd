"""Handoff codes: a device shows one (typed, or scanned as a QR code of its link), another device
redeems it for a token of its own on the same subject.

A code is ten characters of Crockford's base32 (no I, L, O or U; 50 bits), shown as `ABCDE-FGHJK`.
Its first half finds the code, the whole of it is the secret; both are stored only as keyed
hashes (system key `handoff`), so the table does not give codes away to whoever reads it. A code
is single-use, expires after minutes, and is burnt after `CODE_FAILURES` wrong secrets. Each
client (a keyed hash of its address) may fail `client_failures` times a window, counted in the
database so that every process counts the same guesses. docs/api.md works out the odds.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import asyncpg

from continuity.db import Conn
from continuity.devices import Device, Devices
from continuity.errors import SubjectErased
from privacy.cipher import SystemKey, keyed_hash
from privacy.vault import KeyVault

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 10
LOOKUP = 5
"""The characters that find a code; the rest only check it."""
CODE_FAILURES = 5
"""Wrong secrets a code survives: the next one burns it."""
HANDOFF_KEY = "handoff"
_TYPOS = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})

Refusal = Literal["wrong", "used", "expired"]


class CodeRefused(Exception):
    """A redemption that failed: the code is wrong, used already, or expired (or burnt)."""

    def __init__(self, why: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.why = why


class TooManyFailures(Exception):
    """This client failed too often in the window; `retry_after` seconds until it ends."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong handoff codes from this client; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Limits:
    ttl: timedelta = timedelta(minutes=5)
    client_failures: int = 10
    window: timedelta = timedelta(minutes=15)


def normalise(typed: str) -> str | None:
    """The code as issued, from what someone typed (any case, dashes and spaces, O for 0 and
    I or L for 1); None if it cannot be one."""
    code = typed.upper().translate(_TYPOS)
    if len(code) != LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


def shown(code: str) -> str:
    return f"{code[:LOOKUP]}-{code[LOOKUP:]}"


def _lookup(key: SystemKey, code: str) -> bytes:
    return keyed_hash(key, b"handoff-lookup\x00" + code[:LOOKUP].encode())


def _secret(key: SystemKey, code: str) -> bytes:
    return keyed_hash(key, b"handoff-secret\x00" + code.encode())


class HandoffCodes:
    def __init__(
        self, pool: asyncpg.Pool, vault: KeyVault, devices: Devices, limits: Limits | None = None
    ) -> None:
        self.pool = pool
        self.vault = vault
        self.devices = devices
        self.limits = limits or Limits()

    async def issue(self, subject_id: UUID, device_id: UUID | None) -> IssuedCode:
        """A new code for `subject_id`, asked for by `device_id` (None: a token without one)."""
        if await self.vault.erased_among([subject_id]):
            raise SubjectErased(subject_id)
        key = await self.vault.system_key(HANDOFF_KEY)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM handoff_codes WHERE expires_at < now() - interval '1 day'"
            )
            while True:
                code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
                expires_at = await conn.fetchval(
                    "INSERT INTO handoff_codes (lookup, secret, subject_id, device_id,"
                    " expires_at) VALUES ($1, $2, $3, $4, now() + $5::interval)"
                    " ON CONFLICT (lookup) DO UPDATE SET secret = excluded.secret,"
                    " subject_id = excluded.subject_id, device_id = excluded.device_id,"
                    " created_at = now(), expires_at = excluded.expires_at, used_at = NULL,"
                    " failures = 0 WHERE handoff_codes.expires_at < now()"
                    " RETURNING expires_at",
                    _lookup(key, code),
                    _secret(key, code),
                    subject_id,
                    device_id or subject_id,
                    self.limits.ttl,
                )
                if expires_at is not None:  # else its first half is a live code's: draw again
                    return IssuedCode(shown(code), expires_at)

    async def redeem(self, typed: str, client: str, name: str, channel: str) -> Device:
        """A new device on the code's subject; CodeRefused or TooManyFailures if not. A
        failure is recorded before it is answered."""
        key = await self.vault.system_key(HANDOFF_KEY)
        who = keyed_hash(key, b"handoff-client\x00" + client.encode())
        async with self.pool.acquire() as conn, conn.transaction():
            await self._check_client(conn, who)
            outcome = await self._use(conn, key, typed)
            if isinstance(outcome, UUID):
                if await self.vault.erased_among([outcome], conn):
                    raise SubjectErased(outcome)
                return await self.devices.register(conn, outcome, name, channel, outcome)
            if outcome.why == "wrong":
                await self._fail(conn, who)
        raise outcome  # after the commit: the failure counts though the redemption failed

    async def _check_client(self, conn: Conn, who: bytes) -> None:
        row = await conn.fetchrow(
            "SELECT failures, extract(epoch FROM window_start + $2::interval - now()) AS left"
            " FROM redeem_failures WHERE client = $1 AND window_start > now() - $2::interval",
            who,
            self.limits.window,
        )
        if row is not None and row["failures"] >= self.limits.client_failures:
            raise TooManyFailures(max(1, math.ceil(row["left"])))

    async def _use(self, conn: Conn, key: SystemKey, typed: str) -> UUID | CodeRefused:
        """The code's subject, the code now used; or why not (a wrong secret counts against
        the code it names)."""
        wrong = CodeRefused("wrong", "the handoff code is wrong: check it and type it again")
        code = normalise(typed)
        if code is None:
            return wrong
        row = await conn.fetchrow(
            "SELECT secret, subject_id, used_at IS NOT NULL AS used, expires_at < now() AS late,"
            " failures FROM handoff_codes WHERE lookup = $1 FOR UPDATE",
            _lookup(key, code),
        )
        if row is None:
            return wrong
        if not secrets.compare_digest(row["secret"], _secret(key, code)):
            await conn.execute(
                "UPDATE handoff_codes SET failures = failures + 1 WHERE lookup = $1",
                _lookup(key, code),
            )
            return wrong
        if row["used"]:
            return CodeRefused("used", "the handoff code was used already: ask for a new one")
        if row["late"] or row["failures"] >= CODE_FAILURES:
            return CodeRefused("expired", "the handoff code expired: ask for a new one")
        await conn.execute(
            "UPDATE handoff_codes SET used_at = now() WHERE lookup = $1", _lookup(key, code)
        )
        subject: UUID = row["subject_id"]
        return subject

    async def _fail(self, conn: Conn, who: bytes) -> None:
        await conn.execute(
            "INSERT INTO redeem_failures (client, window_start, failures) VALUES ($1, now(), 1)"
            " ON CONFLICT (client) DO UPDATE SET"
            " failures = CASE WHEN redeem_failures.window_start > now() - $2::interval"
            " THEN redeem_failures.failures + 1 ELSE 1 END,"
            " window_start = CASE WHEN redeem_failures.window_start > now() - $2::interval"
            " THEN redeem_failures.window_start ELSE now() END",
            who,
            self.limits.window,
        )


async def forget_codes(conn: Conn, subject_ids: list[UUID]) -> None:
    """The subjects' codes go (an erasure, or a guest signing in)."""
    await conn.execute("DELETE FROM handoff_codes WHERE subject_id = ANY($1::uuid[])", subject_ids)
