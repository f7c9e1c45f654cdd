"""Guests: subjects without an account, and their sign-in as a known customer.

A guest is a subject like any other (their own key, their own streams), recorded in `guests`.
Signing in links the guest to the customer in three steps, each safe to repeat, so a sign-in
cut short is finished by the next one and a repeated one changes nothing:

1. the link is recorded (before anything moves, so erasing the customer finds the guest);
2. the guest's cart, applications and conversations are merged into the customer's
   (`continuity.merge`, one atomic append, idempotent);
3. the guest's devices become the customer's (their tokens now act as the customer, in every
   process before this returns), and the guest's handoff codes go.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg

from aggregates.errors import InvalidState
from aggregates.metadata import EventMeta
from continuity.devices import ACK_TIMEOUT, Device, Devices
from continuity.errors import SubjectErased
from continuity.handoff import HandoffCodes, forget_codes
from continuity.merge import GuestMerge, MergeSummary
from continuity.processes import acknowledged
from privacy.vault import KeyVault


@dataclass(frozen=True, slots=True)
class Linked:
    customer_id: UUID
    guest_id: UUID | None
    """None: the device was the customer's already, and never a guest's."""
    merged: MergeSummary | None
    """What moved; None when the device was the customer's already."""


class Guests:
    def __init__(
        self,
        pool: asyncpg.Pool,
        vault: KeyVault,
        devices: Devices,
        codes: HandoffCodes,
        merger: GuestMerge,
    ) -> None:
        self.pool = pool
        self.vault = vault
        self.devices = devices
        self.codes = codes
        self.merger = merger

    async def start(self, name: str, channel: str) -> Device:
        """A new guest, and their first device."""
        guest_id = uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO guests (subject_id) VALUES ($1)", guest_id)
            return await self.devices.register(conn, guest_id, name, channel, guest_id)

    async def is_guest(self, subject_id: UUID) -> bool:
        found: bool = await self.pool.fetchval(
            "SELECT EXISTS (SELECT FROM guests WHERE subject_id = $1)", subject_id
        )
        return found

    async def linked_to(self, customer_id: UUID) -> list[UUID]:
        """The guests linked to `customer_id`."""
        rows = await self.pool.fetch(
            "SELECT subject_id FROM guests WHERE linked_to = $1 ORDER BY linked_at", customer_id
        )
        return [row["subject_id"] for row in rows]

    async def link(
        self, subject_id: UUID, device_id: UUID | None, customer_id: UUID, meta: EventMeta
    ) -> Linked:
        """Sign the guest `subject_id` in as `customer_id` (see the module's docstring). A
        device that was linked already (it acts as the customer now) links again harmlessly.
        InvalidState if the guest is linked to another customer, or the device is another
        customer's, or `customer_id` is a guest itself."""
        guest_id = subject_id
        if subject_id == customer_id:
            first = device_id and await self.pool.fetchval(
                "SELECT first_subject FROM devices WHERE device_id = $1", device_id
            )
            if not first or first == customer_id:
                return Linked(customer_id, None, None)
            guest_id = first
        if await self.vault.erased_among([guest_id, customer_id]):
            raise SubjectErased(customer_id)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT subject_id, linked_to FROM guests WHERE subject_id = ANY($1::uuid[])"
                " ORDER BY subject_id FOR UPDATE",
                [guest_id, customer_id],
            )
            found = {row["subject_id"]: row["linked_to"] for row in rows}
            if customer_id in found:
                raise InvalidState("the token names a guest, not a known customer", "token")
            if guest_id not in found:
                raise InvalidState("this device is not a guest's: it is signed in", "token")
            if found[guest_id] not in (None, customer_id):
                raise InvalidState("this guest is linked to another customer already", "token")
            await conn.execute(
                "UPDATE guests SET linked_to = $2, linked_at = coalesce(linked_at, now())"
                " WHERE subject_id = $1",
                guest_id,
                customer_id,
            )
        merged = (
            None if self.merger is None else await self.merger.merge(guest_id, customer_id, meta)
        )
        async with self.pool.acquire() as conn, conn.transaction():
            moving = await conn.fetch(
                "SELECT device_id FROM devices WHERE subject_id = $1", guest_id
            )
            seqs = await self.devices.move(conn, [r["device_id"] for r in moving], customer_id)
            await forget_codes(conn, [guest_id])
            await conn.execute(
                "UPDATE guests SET merged_at = coalesce(merged_at, now()) WHERE subject_id = $1",
                guest_id,
            )
        if seqs:
            await acknowledged(self.pool, max(seqs), ACK_TIMEOUT)
        return Linked(customer_id, guest_id, merged)
