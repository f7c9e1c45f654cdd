"""Bodies of the consent routes (`/v1/me/consents`, `/v1/privacy/subjects/{id}/consents`),
shown in the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from aggregates.consent import MAX_POLICY_VERSION, PURPOSES
from continuity.consent_proofs import Proof
from continuity.consents import Ledger

PolicyVersion = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_POLICY_VERSION,
        description="The version of the privacy policy the customer was shown, e.g. 2026-01.",
    ),
]
CustomerSource = Literal["device", "sign-in"]


class ConsentBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Give (`given` true) or withdraw consent to one purpose, under `policy_version`;
    `source` says where the customer chose: the app's settings (`device`, the default) or a
    sign-in form (`sign-in`)."""

    given: bool
    policy_version: PolicyVersion
    source: CustomerSource = "device"


class ConsentsBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Several purposes at once (`consents`: purpose to given, at least one), recorded as one
    request."""

    consents: dict[str, bool]
    policy_version: PolicyVersion
    source: CustomerSource = "device"


class ConsentState(msgspec.Struct):
    """One purpose now: `given`, and `default` true while the customer has never chosen
    (then `given` is the default and the rest is null); else when (`at`) and how the last
    choice was made."""

    purpose: str
    given: bool
    default: bool
    policy_version: str | None
    channel: str | None
    source: str | None
    at: datetime | None

    @classmethod
    def of(cls, ledger: Ledger, purpose: str) -> ConsentState:
        entry = ledger.entry(purpose)
        if entry is None:
            return cls(purpose, ledger.given(purpose), True, None, None, None, None)
        return cls(
            purpose, entry.given, False, entry.policy_version, entry.channel, entry.source, entry.at
        )


class Consents(msgspec.Struct):
    """Every purpose now, and the ledger's `version` (also the ETag, for `If-Match`)."""

    version: int
    consents: list[ConsentState]

    @classmethod
    def of(cls, ledger: Ledger) -> Consents:
        return cls(ledger.version, [ConsentState.of(ledger, p) for p in PURPOSES])


class ConsentProof(msgspec.Struct):
    """One recorded choice: its position in the log and when, the purpose, given or
    withdrawn, the policy version, the channel and the source."""

    position: int
    recorded_at: datetime
    purpose: str
    given: bool
    policy_version: str | None
    channel: str
    source: str

    @classmethod
    def of(cls, proof: Proof) -> ConsentProof:
        return cls(
            proof.position,
            proof.recorded_at,
            proof.purpose,
            proof.given,
            proof.policy_version,
            proof.channel,
            proof.source,
        )


class ConsentHistory(msgspec.Struct):
    """Every choice a subject made, oldest first: the proofs, which outlive their erasure."""

    subject_id: UUID
    proofs: list[ConsentProof]
