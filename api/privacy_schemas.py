"""Bodies of the privacy routes (erasure requests, legal holds, the suppression list), shown in
the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from continuity.erasure_requests import (
    MAX_REASON,
    MAX_REFERENCE,
    ErasureRequest,
    RequesterRole,
    RequestPage,
    State,
)
from continuity.identifiers import MAX_IDENTIFIER
from continuity.legal_holds import MAX_REASON as MAX_HOLD_REASON
from continuity.legal_holds import Hold

Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=MAX_IDENTIFIER,
        description="An email address, looked up by keyed hash (never stored).",
        examples=["ada@example.org"],
    ),
]
Phone = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=MAX_IDENTIFIER,
        description="A phone number in international form, looked up by keyed hash.",
        examples=["+4915112345678"],
    ),
]
Reason = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_REASON,
        description="Why (free text; sealed at rest, shown to compliance officers only).",
        examples=["Art. 17 request received by letter"],
    ),
]
Reference = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_REFERENCE,
        description="The ticket or case number (sealed at rest).",
        examples=["PRIV-2041"],
    ),
]


class NewErasure(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Whom to erase: exactly one of `subject_id`, `email` or `phone`."""

    subject_id: UUID | None = None
    email: Email | None = None
    phone: Phone | None = None
    reason: Reason | None = None
    reference: Reference | None = None


class Identifier(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An email address or a phone number: exactly one."""

    email: Email | None = None
    phone: Phone | None = None


class HoldBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_HOLD_REASON,
            description="Why the subject's data must be kept (sealed at rest).",
            examples=["litigation hold, case 2026-118"],
        ),
    ]


class RequestedBy(msgspec.Struct):
    role: RequesterRole
    id: UUID
    """The compliance officer's id, or the customer's own subject id."""
    device_id: UUID | None
    """The customer's registered device, when they asked from one."""
    device: str | None
    """The device as the customer's token named it."""


class ErasureView(msgspec.Struct):
    """An erasure request as a compliance officer sees it."""

    request_id: UUID
    subject_id: UUID
    state: State
    requested_by: RequestedBy
    reason: str | None
    reference: str | None
    hold_reason: str | None
    """While blocked: why the subject is held."""
    failure: str | None
    attempts: int
    received_at: datetime
    executing_at: datetime | None
    blocked_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    certificate: str | None
    """Where the signed certificate is, once completed."""

    @classmethod
    def of(cls, request: ErasureRequest) -> ErasureView:
        by = request.requester
        done = request.state == "completed"
        return cls(
            request_id=request.request_id,
            subject_id=request.subject_id,
            state=request.state,
            requested_by=RequestedBy(by.role, by.id, by.device_id, by.device),
            reason=request.reason,
            reference=request.reference,
            hold_reason=request.hold_reason,
            failure=request.failure,
            attempts=request.attempts,
            received_at=request.received_at,
            executing_at=request.executing_at,
            blocked_at=request.blocked_at,
            completed_at=request.completed_at,
            failed_at=request.failed_at,
            certificate=f"/v1/privacy/erasures/{request.request_id}/certificate" if done else None,
        )


class ErasurePage(msgspec.Struct):
    """A page of erasure requests, newest first; `next_cursor` fetches the next (null: this is
    the last)."""

    items: list[ErasureView]
    next_cursor: str | None

    @classmethod
    def of(cls, page: RequestPage) -> ErasurePage:
        return cls([ErasureView.of(r) for r in page.requests], page.next_cursor)


class MyErasure(msgspec.Struct):
    """A customer's own erasure request (blocked: a legal hold stands, whose reason is for
    compliance officers only). Once completed, this device's token no longer works."""

    request_id: UUID
    state: State
    received_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, request: ErasureRequest) -> MyErasure:
        return cls(request.request_id, request.state, request.received_at, request.completed_at)


class HoldView(msgspec.Struct):
    subject_id: UUID
    reason: str
    placed_by: UUID
    placed_at: datetime

    @classmethod
    def of(cls, hold: Hold) -> HoldView:
        return cls(hold.subject_id, hold.reason, hold.placed_by, hold.placed_at)


class HoldLifted(msgspec.Struct):
    """The hold lifted, and the erasure requests it blocked, executed since."""

    subject_id: UUID
    lifted_by: UUID
    lifted_at: datetime
    erasures: list[ErasureView]
