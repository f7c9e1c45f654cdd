"""A data subject's consent ledger: for each purpose, whether they gave or withdrew consent,
under which policy version, and where the choice came from (the source; the channel is the
event's metadata). Every choice is an event, recorded each time it is made, so what the subject
chose, and when, is provable from the log.

One stream per subject. Until a purpose has a record its default holds (`DEFAULTS`):
`essential` and `personalization` are given (activity was recorded until refused before the
ledger existed, and stays so), `marketing`, `analytics` and `sale_share` are not (opt-in).
`essential` cannot be withdrawn: it covers what the service cannot run without.
"""

from __future__ import annotations

import re
from typing import Literal, Self, get_args
from uuid import UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate, event

from aggregates.errors import InvalidValue
from aggregates.restoring import restored

Purpose = Literal["essential", "personalization", "marketing", "analytics", "sale_share"]
PURPOSES: tuple[str, ...] = get_args(Purpose)
Source = Literal["device", "gpc", "agent", "sign-in", "preferences", "sync"]
"""Where a choice came from: the customer on a device (`device`; `preferences` for the older
`PUT /v1/me/preferences`, `sync` for an offline batch), the browser's Global Privacy Control
signal (`gpc`, the Sec-GPC header), an agent recording what the customer said (`agent`), or a
sign-in form (`sign-in`)."""
SOURCES: tuple[str, ...] = get_args(Source)

ESSENTIAL = "essential"
PERSONALIZATION = "personalization"
MARKETING = "marketing"
ANALYTICS = "analytics"
SALE_SHARE = "sale_share"
DEFAULTS: dict[str, bool] = {
    ESSENTIAL: True,
    PERSONALIZATION: True,
    MARKETING: False,
    ANALYTICS: False,
    SALE_SHARE: False,
}
"""What holds for a purpose the subject has said nothing about."""
MAX_POLICY_VERSION = 32
_POLICY_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
CONSENT_NAMESPACE = UUID("5d0c2b8e-7a31-4f6e-b9c4-1e8a3d2f6b57")


class ConsentState(msgspec.Struct, frozen=True, gc=False):
    """What a snapshot holds, and what the session view carries to stand the stream up: each
    purpose's recorded choice (purposes never recorded are absent: their default holds)."""

    subject_id: UUID
    given: dict[str, bool]


def check_purpose(purpose: str, field: str = "purpose") -> str:
    if purpose not in PURPOSES:
        raise InvalidValue(f"purpose must be one of {', '.join(PURPOSES)}", field)
    return purpose


def check_policy_version(version: str | None, field: str = "policy_version") -> str | None:
    """A policy version names a published text (`2026-01`, `v3.2`): 1 to 32 letters, digits
    and `.`, `_`, `:`, `-`; None when the route that records the choice names none."""
    if version is None:
        return None
    if len(version) > MAX_POLICY_VERSION or not _POLICY_VERSION.fullmatch(version):
        raise InvalidValue(
            f"policy_version must be 1 to {MAX_POLICY_VERSION} letters, digits, '.', '_', ':'"
            " or '-', starting with a letter or digit",
            field,
        )
    return version


class Consent(Aggregate):
    class Started(Aggregate.Created):
        subject_id: UUID

    class Recorded(Aggregate.Event):
        """The subject gave (`given`) or withdrew consent to `purpose`, under `policy_version`
        (None: the route named none), from `source`."""

        purpose: str
        given: bool
        policy_version: str | None
        source: str

    @event(Started)
    def __init__(self, subject_id: UUID) -> None:
        self.subject_id = subject_id
        self.given: dict[str, bool] = {}

    @staticmethod
    def create_id(subject_id: UUID) -> UUID:
        return uuid5(CONSENT_NAMESPACE, str(subject_id))

    @classmethod
    def snapshot_type(cls) -> type[ConsentState]:
        return ConsentState

    def snapshot_state(self) -> ConsentState:
        return ConsentState(self.subject_id, dict(self.given))

    @classmethod
    def restore(cls, stream_id: UUID, version: int, state: ConsentState) -> Self:
        """The stream at `version` from its state then, as if its events had been replayed."""
        return restored(
            cls, stream_id, version, subject_id=state.subject_id, given=dict(state.given)
        )

    def allows(self, purpose: str) -> bool:
        """Whether consent to `purpose` is given now (its default, if never recorded)."""
        return self.given.get(purpose, DEFAULTS[check_purpose(purpose)])

    def record(
        self,
        purpose: str,
        given: bool,
        policy_version: str | None,
        source: str,
        *,
        field: str = "purpose",
    ) -> None:
        """Record one choice (again, if it repeats the current one: each is proof of what the
        subject said, and when). `essential` cannot be withdrawn (InvalidValue naming `given`);
        `field` is where the caller's input named the purpose, for the error."""
        check_purpose(purpose, field)
        if purpose == ESSENTIAL and not given:
            raise InvalidValue(
                "essential processing cannot be withdrawn: the service cannot run without it;"
                " request erasure instead",
                "given" if field == "purpose" else field,
            )
        if source not in SOURCES:
            raise InvalidValue(f"source must be one of {', '.join(SOURCES)}", "source")
        self._recorded(purpose, given, check_policy_version(policy_version), source)

    @event(Recorded)
    def _recorded(self, purpose: str, given: bool, policy_version: str | None, source: str) -> None:
        self.given[purpose] = given
