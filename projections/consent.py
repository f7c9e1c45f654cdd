"""The consent part of the session view: each purpose's last recorded choice, with when and how
it was made (policy version, channel, source). What activity, sign-in merges, marketing turns
and the consent routes read: one source, folded from the ledger (`aggregates.consent`) in the
same commit as its events.

A personalization choice recorded before the ledger existed (`Activity.PersonalizationSet`, by
`PUT /v1/me/preferences`) folds in as a personalization record from source `preferences`, so a
customer who refused then still refuses now.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from aggregates.activity import Activity
from aggregates.consent import DEFAULTS, PERSONALIZATION, Consent
from projections.envelope import Envelope


class ConsentEntry(msgspec.Struct, frozen=True, gc=False):
    """A purpose's last recorded choice."""

    given: bool
    policy_version: str | None
    channel: str
    source: str
    at: datetime


Consents = dict[str, ConsentEntry]


def apply(consents: Consents, envelope: Envelope) -> Consents:
    """`consents` with the envelope's choice, if it records one."""
    event = envelope.event
    if isinstance(event, Consent.Recorded):
        entry = ConsentEntry(
            event.given, event.policy_version, envelope.channel, event.source, envelope.recorded_at
        )
        return {**consents, event.purpose: entry}
    if isinstance(event, Activity.PersonalizationSet):
        entry = ConsentEntry(
            event.allowed, None, envelope.channel, "preferences", envelope.recorded_at
        )
        return {**consents, PERSONALIZATION: entry}
    return consents


def given(consents: Consents, purpose: str) -> bool:
    """Whether consent to `purpose` is given (its default, if never recorded)."""
    entry = consents.get(purpose)
    return entry.given if entry is not None else DEFAULTS[purpose]


def personalization_changed(envelope: Envelope) -> bool | None:
    """The personalization choice an event records (None: it records none)."""
    event = envelope.event
    if isinstance(event, Consent.Recorded) and event.purpose == PERSONALIZATION:
        return event.given
    if isinstance(event, Activity.PersonalizationSet):
        return event.allowed
    return None
