"""A customer's devices: each has its own token, can be listed and revoked, and may move from a
guest to the customer the guest signs in as.

A device token names its device (`did`). Every request with one asks `principal` which subject
the device belongs to now and whether it was revoked. The answer is cached per process, but only
while this process hears broadcasts (`continuity.processes`): revoking or moving a device
broadcasts it and waits until every live process has dropped its cached answer, so a revoked
token is refused by every process from the moment the revocation is answered. A cached answer
read before a broadcast never outlives it (an epoch, as in the key vault).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

from aggregates.errors import NotFound
from continuity.db import Conn
from continuity.processes import Process, acknowledged, publish
from privacy.cipher import DecryptionFailed, row_aad, seal, unseal
from privacy.vault import KeyVault

BROADCAST = "device"
CACHE_SIZE = 100_000
SEEN_EVERY = 60.0
"""Seconds: a device's `last_seen` is written at most this often by one process."""
ACK_TIMEOUT = 5.0
"""Seconds a revocation waits for every live process to acknowledge it."""


class DeviceRefused(Exception):
    """The device's token no longer works: revoked, or its device is gone (erased)."""


@dataclass(frozen=True, slots=True)
class Owner:
    """What a device token may act as now (cached): its subject, unless revoked, and the
    channel the device registered with (where its actions happen unless it says otherwise)."""

    subject_id: UUID
    first_subject: UUID
    revoked: bool
    channel: str


@dataclass(frozen=True, slots=True)
class Device:
    device_id: UUID
    subject_id: UUID
    name: str
    channel: str
    first_seen: datetime
    last_seen: datetime
    revoked_at: datetime | None = None


def _aad(subject_id: UUID, device_id: UUID) -> bytes:
    return row_aad("devices", subject_id, str(device_id))


class Devices:
    def __init__(self, pool: asyncpg.Pool, vault: KeyVault, process: Process, schema: str) -> None:
        self.pool = pool
        self.vault = vault
        self.process = process
        self.schema = schema
        self._owners: OrderedDict[UUID, tuple[Owner, float]] = OrderedDict()
        self._epoch = 0
        process.on_broadcast(self._on_broadcast, self._clear)

    async def register(
        self, conn: Conn, subject_id: UUID, name: str, channel: str, first_subject: UUID
    ) -> Device:
        """A new device of `subject_id`, its name sealed with their key (in `conn`'s
        transaction)."""
        device_id = uuid4()
        key = await self.vault.key_for_writing(subject_id)
        row = await conn.fetchrow(
            "INSERT INTO devices (device_id, subject_id, first_subject, channel, key_version,"
            " name) VALUES ($1, $2, $3, $4, $5, $6) RETURNING first_seen, last_seen",
            device_id,
            subject_id,
            first_subject,
            channel,
            key.version,
            seal(key, name.encode(), _aad(subject_id, device_id)),
        )
        assert row is not None
        return Device(device_id, subject_id, name, channel, row["first_seen"], row["last_seen"])

    async def of_subject(self, subject_id: UUID, *, revoked: bool = False) -> list[Device]:
        """The subject's devices, most recently seen first: those not revoked, or (`revoked`)
        every one still held, revoked ones too (what an export lists)."""
        rows = await self.pool.fetch(
            "SELECT device_id, key_version, name, channel, first_seen, last_seen, revoked_at"
            " FROM devices WHERE subject_id = $1"
            + ("" if revoked else " AND revoked_at IS NULL")
            + " ORDER BY last_seen DESC, device_id",
            subject_id,
        )
        keys = await self.vault.keys_for_reading((subject_id, r["key_version"]) for r in rows)
        devices = []
        for row in rows:
            key = keys.get((subject_id, row["key_version"]))
            if key is None:
                continue  # erased meanwhile
            try:
                name = unseal(key, row["name"], _aad(subject_id, row["device_id"])).decode()
            except DecryptionFailed:
                name = "(unreadable)"
            devices.append(
                Device(
                    row["device_id"],
                    subject_id,
                    name,
                    row["channel"],
                    row["first_seen"],
                    row["last_seen"],
                    row["revoked_at"],
                )
            )
        return devices

    async def names(self, subject_id: UUID) -> dict[str, str]:
        """The names of the subject's devices, by the id their events record as `device`."""
        return {str(device.device_id): device.name for device in await self.of_subject(subject_id)}

    async def revoke(self, subject_id: UUID, device_id: UUID) -> None:
        """Revoke one of the subject's devices, and return once every live process refuses its
        token (or ACK_TIMEOUT passed: a process that does not answer is not live for long)."""
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "UPDATE devices SET revoked_at = coalesce(revoked_at, now())"
                " WHERE device_id = $1 AND subject_id = $2 RETURNING true",
                device_id,
                subject_id,
            )
            if not found:
                raise NotFound("there is no such device", field="device_id")
            seq = await publish(conn, self.schema, BROADCAST, device_id)
        await acknowledged(self.pool, seq, ACK_TIMEOUT)

    async def move(self, conn: Conn, device_ids: list[UUID], to_subject: UUID) -> list[int]:
        """Move devices to `to_subject` (a guest signing in), their names sealed again with the
        new owner's key, in `conn`'s transaction; the broadcasts' numbers, to wait for."""
        rows = await conn.fetch(
            "SELECT device_id, subject_id, key_version, name FROM devices"
            " WHERE device_id = ANY($1::uuid[]) ORDER BY device_id FOR UPDATE",
            device_ids,
        )
        readable = await self.vault.keys_for_reading(
            ((r["subject_id"], r["key_version"]) for r in rows), conn
        )
        key = await self.vault.key_for_writing(to_subject)
        seqs = []
        for row in rows:
            old = readable.get((row["subject_id"], row["key_version"]))
            if old is None:
                continue
            name = unseal(old, row["name"], _aad(row["subject_id"], row["device_id"]))
            await conn.execute(
                "UPDATE devices SET subject_id = $2, key_version = $3, name = $4"
                " WHERE device_id = $1",
                row["device_id"],
                to_subject,
                key.version,
                seal(key, name, _aad(to_subject, row["device_id"])),
            )
            seqs.append(await publish(conn, self.schema, BROADCAST, row["device_id"]))
        return seqs

    async def owner(self, device_id: UUID, token_subject: UUID) -> Owner:
        """What a token issued for `token_subject` on `device_id` acts as now; DeviceRefused
        if the device was revoked or is gone."""
        cached = self._cached(device_id)
        if cached is None:  # unknown here, or last seen long ago: read it (and note the use)
            cached = await self._fetch(device_id)
        if cached is None or cached.revoked:
            raise DeviceRefused("revoked" if cached else "unknown")
        if token_subject not in (cached.subject_id, cached.first_subject):
            raise DeviceRefused("not this subject's device")
        return cached

    def _cached(self, device_id: UUID) -> Owner | None:
        if not self.process.listening:
            return None
        entry = self._owners.get(device_id)
        if entry is None or time.monotonic() - entry[1] >= SEEN_EVERY:
            return None
        self._owners.move_to_end(device_id)
        return entry[0]

    async def _fetch(self, device_id: UUID) -> Owner | None:
        epoch = self._epoch
        row = await self.pool.fetchrow(
            "UPDATE devices SET last_seen = now() WHERE device_id = $1"
            " RETURNING subject_id, first_subject, revoked_at IS NOT NULL AS revoked, channel",
            device_id,
        )
        if row is None:
            return None
        owner = Owner(row["subject_id"], row["first_subject"], row["revoked"], row["channel"])
        if self.process.listening and epoch == self._epoch:
            self._owners[device_id] = (owner, time.monotonic())
            while len(self._owners) > CACHE_SIZE:
                self._owners.popitem(last=False)
        return owner

    def _on_broadcast(self, kind: str, target: UUID) -> None:
        if kind == BROADCAST:
            self._epoch += 1
            self._owners.pop(target, None)

    def _clear(self) -> None:
        self._epoch += 1
        self._owners.clear()


async def forget_devices(conn: Conn, schema: str, subject_ids: list[UUID]) -> list[int]:
    """Delete the subjects' devices (an erasure), broadcasting each; the broadcasts' numbers."""
    gone = await conn.fetch(
        "DELETE FROM devices WHERE subject_id = ANY($1::uuid[]) RETURNING device_id", subject_ids
    )
    return [await publish(conn, schema, BROADCAST, row["device_id"]) for row in gone]
