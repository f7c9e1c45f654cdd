"""The consent ledger: defaults, what it refuses, and that its state stands up from what the
session view carries exactly as a replay of its events does."""

from __future__ import annotations

from uuid import uuid4

import pytest

from aggregates.consent import DEFAULTS, PURPOSES, Consent, ConsentState
from aggregates.errors import InvalidValue


def test_defaults_hold_until_a_choice_is_recorded() -> None:
    consent = Consent(subject_id=uuid4())
    assert {p: consent.allows(p) for p in PURPOSES} == DEFAULTS
    assert DEFAULTS == {
        "essential": True,
        "personalization": True,
        "marketing": False,
        "analytics": False,
        "sale_share": False,
    }
    consent.record("marketing", True, "2026-01", "device")
    consent.record("personalization", False, "2026-01", "device")
    assert (consent.allows("marketing"), consent.allows("personalization")) == (True, False)


def test_every_choice_is_an_event_even_a_repeat() -> None:
    consent = Consent(subject_id=uuid4())
    consent.record("analytics", True, "2026-01", "device")
    consent.record("analytics", True, "2026-01", "device")
    recorded = [e for e in consent.collect_events() if isinstance(e, Consent.Recorded)]
    assert [(e.purpose, e.given, e.policy_version, e.source) for e in recorded] == [
        ("analytics", True, "2026-01", "device")
    ] * 2


@pytest.mark.parametrize(
    ("purpose", "given", "policy", "source", "field"),
    [
        ("essential", False, "2026-01", "device", "given"),
        ("telepathy", True, "2026-01", "device", "purpose"),
        ("marketing", True, "", "device", "policy_version"),
        ("marketing", True, "x" * 33, "device", "policy_version"),
        ("marketing", True, "2026 01", "device", "policy_version"),
        ("marketing", True, "2026-01", "carrier pigeon", "source"),
    ],
)
def test_what_the_ledger_refuses_records_nothing(
    purpose: str, given: bool, policy: str, source: str, field: str
) -> None:
    consent = Consent(subject_id=uuid4())
    consent.collect_events()
    with pytest.raises(InvalidValue) as refused:
        consent.record(purpose, given, policy, source)
    assert refused.value.field == field
    assert consent.collect_events() == []


def test_essential_can_be_given_again() -> None:
    consent = Consent(subject_id=uuid4())
    consent.record("essential", True, None, "sign-in")
    assert consent.allows("essential")


def test_restored_state_behaves_like_the_replayed_stream() -> None:
    subject = uuid4()
    replayed = Consent(subject_id=subject)
    replayed.record("sale_share", False, None, "gpc")
    replayed.record("marketing", True, "2026-01", "device")
    replayed.collect_events()
    state = replayed.snapshot_state()
    assert state == ConsentState(subject, {"sale_share": False, "marketing": True})
    restored = Consent.restore(replayed.id, replayed.version, state)
    for consent in (replayed, restored):
        consent.record("marketing", False, "2026-02", "device")
        (event,) = consent.collect_events()
        assert event.originator_version == 4
    assert state.given == {"sale_share": False, "marketing": True}, "the state is not shared"
    assert restored.given == replayed.given
