"""Non-personal analytics: per day (UTC) and channel, how many customer actions were recorded,
how many subjects were active, how many carts were started and checked out, how many
applications were started and submitted, and how many conversations were opened, handed off to
an agent, resolved and rated (with the ratings' sum), counting only subjects who had consented
to analytics when they acted. An asynchronous projection: the runner follows the log from its
checkpoint, a rebuild makes the same rows.

At the time of the action is the rule: consent given later does not reach back to actions
recorded before it, and a withdrawal stops the counting from then on, not for what was counted
already (that was lawful when it was counted). An action is an event a customer's device
recorded (actor `customer`); the consent ledger's own events are not actions. A milestone (a
cart started, a conversation resolved...) counts whoever recorded it (the customer, a bot, an
agent), but not the system's own (an application expiring).

Journeys across channels, each application form's funnel and how conversations end are folded
by `continuity.analytics_journeys` from the same events.

`analytics_daily` holds counts only: no subject id, nothing that erasure needs to touch, so
the counts survive it. Two tables keyed by the subject's pseudonym serve the fold and are
deleted with the subject at erasure (`continuity.catalog.forget`): whether each subject
consents to analytics now (`analytics_consent`), and on which days and channels they were
counted active already (`analytics_active`, so a subject counts once a day per channel). A
rebuild after an erasure cannot read the erased subject's events, so it counts without them;
the live tables keep them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from uuid import UUID

import msgspec

from aggregates.application import Application
from aggregates.cart import Cart
from aggregates.consent import ANALYTICS, DEFAULTS, Consent
from aggregates.conversation import Conversation
from continuity import analytics_journeys
from continuity.db import Conn, Queryable
from continuity.projection import Mode, Placement
from projections.envelope import Envelope
from projections.tables import Table

DAILY = "analytics_daily"
CONSENT = "analytics_consent"
ACTIVE = "analytics_active"
TABLES = (
    Table(
        DAILY,
        (
            "CREATE TABLE {table} ("
            " day date NOT NULL,"
            " channel text NOT NULL,"
            " actions bigint NOT NULL,"
            " active_subjects bigint NOT NULL,"
            " carts_started bigint NOT NULL,"
            " carts_checked_out bigint NOT NULL,"
            " applications_started bigint NOT NULL,"
            " applications_submitted bigint NOT NULL,"
            " conversations_opened bigint NOT NULL,"
            " handoffs_requested bigint NOT NULL,"
            " conversations_resolved bigint NOT NULL,"
            " ratings bigint NOT NULL,"
            " rating_sum bigint NOT NULL,"
            " PRIMARY KEY (day, channel))",
        ),
        subject_column=None,
    ),
    Table(
        CONSENT,
        ("CREATE TABLE {table} (subject_id uuid PRIMARY KEY, given boolean NOT NULL)",),
    ),
    Table(
        ACTIVE,
        (
            "CREATE TABLE {table} ("
            " subject_id uuid NOT NULL,"
            " day date NOT NULL,"
            " channel text NOT NULL,"
            " PRIMARY KEY (subject_id, day, channel))",
        ),
    ),
)
MAX_DAYS = 366
"""Days one read returns at most."""


class DailyCount(msgspec.Struct, frozen=True, gc=False):
    """One day on one channel, of subjects who had consented to analytics: customer actions
    recorded, distinct subjects active (counted, never listed), carts started (the first item
    added) and checked out, applications started and submitted, conversations opened, handed
    off to an agent, resolved and rated, each counted on the channel where it happened (an
    agent's resolution on `agent`). Also the body of `GET /v1/analytics/daily`."""

    day: date
    channel: str
    actions: int
    active_subjects: int
    carts_started: int
    carts_checked_out: int
    applications_started: int
    applications_submitted: int
    conversations_opened: int
    handoffs_requested: int
    conversations_resolved: int
    ratings: int
    rating_sum: int
    """Of the ratings (1 to 5): their average is `rating_sum / ratings`."""


MILESTONES: dict[type, str] = {
    Cart.Opened: "carts_started",
    Cart.CheckedOut: "carts_checked_out",
    Application.Started: "applications_started",
    Application.Submitted: "applications_submitted",
    Conversation.Opened: "conversations_opened",
    Conversation.HandoffRequested: "handoffs_requested",
    Conversation.Resolved: "conversations_resolved",
    Conversation.Rated: "ratings",
}
"""The events counted on their own besides as actions, and the column each is counted in. An
application or conversation moved at sign-in (`Application.Imported`, `Conversation.Imported`)
is not started again; a guest's cart merged into a customer with no open cart opens theirs
(`Cart.Opened`, then `Cart.LinesMerged`), which counts."""
_COUNTS = ("actions", *MILESTONES.values(), "rating_sum")


@dataclass(frozen=True)
class Analytics:
    name: str = "analytics"
    topics: tuple[str, ...] = ()
    tables: tuple[Table, ...] = (*TABLES, *analytics_journeys.TABLES)
    mode: Mode = "async"
    version: int = 4
    """Version 2: carts started and checked out, applications started and submitted. Version 3:
    conversations opened, handed off, resolved and rated. Version 4: journeys across channels,
    each form's funnel, and how conversations end (`continuity.analytics_journeys`)."""

    async def handle(self, conn: Conn, placement: Placement, envelopes: list[Envelope]) -> None:
        """Fold the page in memory (each subject's consent as it stood at each action), then
        write it in four statements."""
        subjects = sorted({e.subject_id for e in envelopes})
        consent = {
            row["subject_id"]: row["given"]
            for row in await conn.fetch(
                f"SELECT subject_id, given FROM {placement[CONSENT]}"
                " WHERE subject_id = ANY($1::uuid[])",
                subjects,
            )
        }
        changed: dict[UUID, bool] = {}
        counts: dict[str, Counter[tuple[date, str]]] = {name: Counter() for name in _COUNTS}
        seen: set[tuple[UUID, date, str]] = set()
        counted: list[Envelope] = []
        for envelope in envelopes:
            event = envelope.event
            subject = envelope.subject_id
            if isinstance(event, Consent.Event):
                if isinstance(event, Consent.Recorded) and event.purpose == ANALYTICS:
                    consent[subject] = changed[subject] = event.given
                continue
            actor = envelope.meta.actor_type if envelope.meta is not None else "system"
            if actor == "system" or not consent.get(subject, DEFAULTS[ANALYTICS]):
                continue
            counted.append(envelope)
            key = day, channel = envelope.recorded_at.date(), envelope.channel
            if (milestone := MILESTONES.get(type(event))) is not None:
                counts[milestone][key] += 1
                if isinstance(event, Conversation.Rated):
                    counts["rating_sum"][key] += event.rating
            if actor == "customer":
                counts["actions"][key] += 1
                seen.add((subject, day, channel))
        if changed:
            await conn.execute(
                f"INSERT INTO {placement[CONSENT]} (subject_id, given)"
                " SELECT * FROM unnest($1::uuid[], $2::boolean[])"
                " ON CONFLICT (subject_id) DO UPDATE SET given = excluded.given",
                list(changed),
                list(changed.values()),
            )
        await analytics_journeys.fold(conn, placement, counted)
        keys = sorted(set().union(*counts.values()))
        if not keys:
            return
        active: Counter[tuple[date, str]] = Counter()
        if seen:
            rows = sorted(seen)
            for row in await conn.fetch(
                f"INSERT INTO {placement[ACTIVE]} (subject_id, day, channel)"
                " SELECT * FROM unnest($1::uuid[], $2::date[], $3::text[])"
                " ON CONFLICT DO NOTHING RETURNING day, channel",
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
            ):
                active[row["day"], row["channel"]] += 1
        columns = ", ".join(_COUNTS)
        arrays = ", ".join(f"${n}::bigint[]" for n in range(4, 4 + len(_COUNTS)))
        added = ", ".join(f"{c} = d.{c} + excluded.{c}" for c in ("active_subjects", *_COUNTS))
        await conn.execute(
            f"INSERT INTO {placement[DAILY]} AS d (day, channel, active_subjects, {columns})"
            f" SELECT * FROM unnest($1::date[], $2::text[], $3::bigint[], {arrays})"
            f" ON CONFLICT (day, channel) DO UPDATE SET {added}",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [active[k] for k in keys],
            *([counts[name][k] for k in keys] for name in _COUNTS),
        )


async def daily(
    conn: Queryable, since: date, until: date, channel: str | None = None
) -> list[DailyCount]:
    """The counts of each day from `since` to `until` (both included), by channel."""
    rows = await conn.fetch(
        f"SELECT day, channel, active_subjects, {', '.join(_COUNTS)} FROM {DAILY}"
        " WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR channel = $3)"
        " ORDER BY day, channel",
        since,
        until,
        channel,
    )
    return [DailyCount(**dict(row)) for row in rows]
