"""Privacy errors. Their messages name pseudonymous ids only, never personal data."""

from __future__ import annotations

from uuid import UUID


class SubjectErased(Exception):
    """The data subject's keys were destroyed: their data is gone for good."""

    def __init__(self, subject_id: UUID) -> None:
        super().__init__(f"subject {subject_id} has been erased")
        self.subject_id = subject_id


class SystemKeyMissing(LookupError):
    """A system key version that was never created (or a row that was lost)."""

    def __init__(self, kind: str, name: str, version: int) -> None:
        super().__init__(f"system key {name!r} ({kind}) has no version {version}")
        self.kind, self.name, self.version = kind, name, version
