"""Errors raised by the application layer. None of their messages carry personal data."""

from __future__ import annotations

from uuid import UUID

from privacy.errors import SubjectErased

__all__ = [
    "ConcurrencyConflict",
    "ContinuityError",
    "DuplicateEvent",
    "EventIdReused",
    "IntegrityViolation",
    "PreconditionFailed",
    "SubjectErased",
    "ViewMoved",
]


class ContinuityError(Exception):
    """Base class for errors the API maps to problem details."""


class ConcurrencyConflict(ContinuityError):
    """A stream moved on since its expected version was read."""

    def __init__(self, stream_id: UUID, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual}, not the expected version {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class EventIdReused(ContinuityError):
    """An event_id (idempotency key) was sent again with different content."""

    def __init__(self, event_id: UUID) -> None:
        super().__init__(f"event_id {event_id} was already used for a different event")
        self.event_id = event_id


class DuplicateEvent(ContinuityError):
    """An append hit an existing event_id; the store decides whether it is a retry."""

    def __init__(self, event_ids: list[UUID]) -> None:
        super().__init__("an event_id in this batch is already recorded")
        self.event_ids = event_ids


class IntegrityViolation(ContinuityError):
    """A stored ciphertext failed authentication: tampering, corruption or a misplaced row."""

    def __init__(self, what: str) -> None:
        super().__init__(f"integrity check failed for {what}")
        self.what = what


class PreconditionFailed(ContinuityError):
    """An If-Match version no longer matches the resource (`what`); `state` is the resource
    as it is now, for the client to merge with, where the answer carries it. An offline
    action's stale `base_version` says what conflicts in `detail`, and which input in `field`."""

    def __init__(
        self,
        expected: str,
        current: int,
        what: str = "cart",
        state: object = None,
        *,
        detail: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(detail or f"the {what} is at version {current}, not {expected}")
        self.expected = expected
        self.current = current
        self.what = what
        self.state = state
        self.detail = detail
        self.field = field


class ViewMoved(ContinuityError):
    """A view row an append was computed from changed before it committed; read it again."""

    def __init__(self, table: str, subject_id: UUID | None) -> None:
        super().__init__(f"a row of {table} changed since it was read")
        self.table = table
        self.subject_id = subject_id
