"""The journey half of the analytics projection (`continuity.analytics` feeds it the events it
counts): cross-channel journeys, each application form's funnel, and how conversations end.

A journey is one cart, application or conversation. It is *cross-channel* when the customer
continues it on a channel other than the one they started it on: each new channel counts once
per journey, as the pair (first channel, new channel), on the day it happened. Only the
customer's own actions move a journey between channels (a bot answers on chat, an agent on
agent: neither is the customer moving).

An application form's funnel counts, per day, the applications started, each step completed
(once per application, however often it is completed again after going back) and submitted.

A conversation is counted on the channel the customer started it on: opened, handed to a
person, resolved, resolved without a handoff (contained by the bot or self-served), the seconds
from opening (or reopening) to resolution and from the handoff to the first agent reply, and
the ratings customers gave it.

What each journey needs to remember (its first channel, the channels it reached, when it opened,
when it was handed off and first answered, its form and the steps completed) lives in
`analytics_journeys`, keyed by the subject's pseudonym and deleted with the subject at
erasure; the counts hold no subject and survive it. Like every analytics count, a journey is
followed only from an action its subject had consented to analytics for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from uuid import UUID

import msgspec

from aggregates.application import Application
from aggregates.cart import Cart
from aggregates.conversation import Conversation
from continuity.db import Conn, Queryable
from continuity.projection import Placement
from projections.envelope import Envelope
from projections.tables import Table

JOURNEYS = "analytics_journeys"
PAIRS = "analytics_channel_pairs"
FUNNEL = "analytics_funnel"
ENDINGS = "analytics_conversations"
STARTED, SUBMITTED = "started", "submitted"
"""The funnel's first and last stages; the steps are between, by their names."""
TABLES = (
    Table(
        JOURNEYS,
        (
            "CREATE TABLE {table} ("
            " stream_id uuid PRIMARY KEY,"
            " subject_id uuid NOT NULL,"
            " first_channel text,"
            " channels text[] NOT NULL,"
            " opened_at timestamptz NOT NULL,"
            " handed_off_at timestamptz,"
            " first_reply_at timestamptz,"
            " form_type text,"
            " form_steps text[] NOT NULL,"
            " steps text[] NOT NULL)",
            "CREATE INDEX ON {table} (subject_id)",
        ),
    ),
    Table(
        PAIRS,
        (
            "CREATE TABLE {table} ("
            " day date NOT NULL,"
            " from_channel text NOT NULL,"
            " to_channel text NOT NULL,"
            " journeys bigint NOT NULL,"
            " PRIMARY KEY (day, from_channel, to_channel))",
        ),
        subject_column=None,
    ),
    Table(
        FUNNEL,
        (
            "CREATE TABLE {table} ("
            " day date NOT NULL,"
            " form_type text NOT NULL,"
            " stage text NOT NULL,"
            " stage_index integer NOT NULL,"
            " reached bigint NOT NULL,"
            " PRIMARY KEY (day, form_type, stage))",
        ),
        subject_column=None,
    ),
    Table(
        ENDINGS,
        (
            "CREATE TABLE {table} ("
            " day date NOT NULL,"
            " channel text NOT NULL,"
            " opened bigint NOT NULL,"
            " handed_off bigint NOT NULL,"
            " resolved bigint NOT NULL,"
            " contained bigint NOT NULL,"
            " resolution_seconds double precision NOT NULL,"
            " first_replies bigint NOT NULL,"
            " first_reply_seconds double precision NOT NULL,"
            " ratings bigint NOT NULL,"
            " rating_sum bigint NOT NULL,"
            " PRIMARY KEY (day, channel))",
        ),
        subject_column=None,
    ),
)
_ENDING_COUNTS = (
    "opened",
    "handed_off",
    "resolved",
    "contained",
    "first_replies",
    "ratings",
    "rating_sum",
)
_ENDING_SECONDS = ("resolution_seconds", "first_reply_seconds")


@dataclass
class _Journey:
    subject_id: UUID
    opened_at: datetime
    first_channel: str | None = None
    channels: list[str] = field(default_factory=list)
    handed_off_at: datetime | None = None
    first_reply_at: datetime | None = None
    form_type: str | None = None
    form_steps: list[str] = field(default_factory=list)
    """The form's steps in order, as the application started it: the funnel's stages."""
    steps: list[str] = field(default_factory=list)
    """The steps completed (each counted once)."""

    def stage_index(self, stage: str) -> int:
        if stage == STARTED:
            return 0
        if stage == SUBMITTED:
            return len(self.form_steps) + 1
        return self.form_steps.index(stage) + 1 if stage in self.form_steps else 0


@dataclass
class _Page:
    """What one page of events adds up to."""

    pairs: Counter[tuple[date, str, str]] = field(default_factory=Counter)
    funnel: Counter[tuple[date, str, str]] = field(default_factory=Counter)
    stage_index: dict[tuple[str, str], int] = field(default_factory=dict)
    endings: dict[str, defaultdict[tuple[date, str], float]] = field(
        default_factory=lambda: {n: defaultdict(float) for n in (*_ENDING_COUNTS, *_ENDING_SECONDS)}
    )


JOURNEY_EVENTS = (Cart.Event, Application.Event, Conversation.Event)


async def fold(conn: Conn, placement: Placement, counted: Sequence[Envelope]) -> None:
    """Fold the events analytics counts (consented, not the system's) into the journey tables."""
    envelopes = [e for e in counted if isinstance(e.event, JOURNEY_EVENTS)]
    if not envelopes:
        return
    journeys = await _load(conn, placement, sorted({e.stream_id for e in envelopes}))
    touched: set[UUID] = set()
    page = _Page()
    for envelope in envelopes:
        journey = journeys.get(envelope.stream_id)
        if journey is None:
            journey = journeys[envelope.stream_id] = _Journey(
                envelope.subject_id, envelope.recorded_at
            )
        touched.add(envelope.stream_id)
        _step(journey, envelope, page)
    await _save(conn, placement, {s: journeys[s] for s in sorted(touched)}, page)


def _step(journey: _Journey, envelope: Envelope, page: _Page) -> None:
    event, at = envelope.event, envelope.recorded_at
    day, channel = at.date(), envelope.channel
    actor = envelope.meta.actor_type if envelope.meta is not None else "system"
    if actor == "customer" and channel not in journey.channels:
        if journey.first_channel is None:
            journey.first_channel = channel
        else:
            page.pairs[day, journey.first_channel, channel] += 1
        journey.channels.append(channel)
    where = journey.first_channel or channel
    if isinstance(event, Application.Started | Application.Imported):
        journey.form_type = event.form.type
        journey.form_steps = [step.name for step in event.form.steps]
        if isinstance(event, Application.Started):
            _reach(page, day, journey, STARTED)
        else:
            journey.steps = sorted(event.completed)
    elif isinstance(event, Application.StepCompleted) and journey.form_type is not None:
        if event.step not in journey.steps:
            journey.steps.append(event.step)
            _reach(page, day, journey, event.step)
    elif isinstance(event, Application.Submitted) and journey.form_type is not None:
        _reach(page, day, journey, SUBMITTED)
    elif isinstance(event, Conversation.Opened):
        page.endings["opened"][day, where] += 1
    elif isinstance(event, Conversation.Imported):
        # Moved from a guest at sign-in: counted there already, so only its clock carries on.
        journey.opened_at = event.started_at
        if event.status in ("waiting", "with_agent"):
            journey.handed_off_at = event.status_since
        if event.status == "with_agent":
            journey.first_reply_at = event.status_since  # its first reply, if any, was there
    elif isinstance(event, Conversation.Reopened):
        journey.opened_at, journey.handed_off_at, journey.first_reply_at = at, None, None
    elif isinstance(event, Conversation.HandoffRequested) and journey.handed_off_at is None:
        journey.handed_off_at = at
        page.endings["handed_off"][day, where] += 1
    elif isinstance(event, Conversation.Rated):
        page.endings["ratings"][day, where] += 1
        page.endings["rating_sum"][day, where] += event.rating
    elif (
        isinstance(event, Conversation.TurnAdded)
        and event.author == "agent"
        and journey.handed_off_at is not None
        and journey.first_reply_at is None
    ):
        journey.first_reply_at = at
        page.endings["first_replies"][day, where] += 1
        waited = (at - journey.handed_off_at).total_seconds()
        page.endings["first_reply_seconds"][day, where] += waited
    elif isinstance(event, Conversation.Resolved):
        page.endings["resolved"][day, where] += 1
        page.endings["contained"][day, where] += journey.handed_off_at is None
        took = (at - journey.opened_at).total_seconds()
        page.endings["resolution_seconds"][day, where] += took


def _reach(page: _Page, day: date, journey: _Journey, stage: str) -> None:
    assert journey.form_type is not None
    page.funnel[day, journey.form_type, stage] += 1
    page.stage_index[journey.form_type, stage] = journey.stage_index(stage)


async def _load(conn: Conn, placement: Placement, streams: list[UUID]) -> dict[UUID, _Journey]:
    rows = await conn.fetch(
        f"SELECT * FROM {placement[JOURNEYS]} WHERE stream_id = ANY($1::uuid[])", streams
    )
    return {
        row["stream_id"]: _Journey(
            subject_id=row["subject_id"],
            opened_at=row["opened_at"],
            first_channel=row["first_channel"],
            channels=list(row["channels"]),
            handed_off_at=row["handed_off_at"],
            first_reply_at=row["first_reply_at"],
            form_type=row["form_type"],
            form_steps=list(row["form_steps"]),
            steps=list(row["steps"]),
        )
        for row in rows
    }


async def _save(
    conn: Conn, placement: Placement, journeys: dict[UUID, _Journey], page: _Page
) -> None:
    """Channels and step names are single words (`aggregates.forms.NAME`), so each journey's
    lists travel as one space-joined string: asyncpg cannot send ragged two-dimensional
    arrays."""
    rows = list(journeys.values())
    await conn.execute(
        f"INSERT INTO {placement[JOURNEYS]} (stream_id, subject_id, first_channel, channels,"
        " opened_at, handed_off_at, first_reply_at, form_type, form_steps, steps)"
        " SELECT s, subject, first, string_to_array(channels, ' '), opened, handed, replied,"
        " form, string_to_array(form_steps, ' '), string_to_array(steps, ' ')"
        " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],"
        " $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], $10::text[])"
        " AS t(s, subject, first, channels, opened, handed, replied, form, form_steps, steps)"
        " ON CONFLICT (stream_id) DO UPDATE SET first_channel = excluded.first_channel,"
        " channels = excluded.channels, opened_at = excluded.opened_at,"
        " handed_off_at = excluded.handed_off_at, first_reply_at = excluded.first_reply_at,"
        " form_type = excluded.form_type, form_steps = excluded.form_steps,"
        " steps = excluded.steps",
        list(journeys),
        [j.subject_id for j in rows],
        [j.first_channel for j in rows],
        [" ".join(j.channels) for j in rows],
        [j.opened_at for j in rows],
        [j.handed_off_at for j in rows],
        [j.first_reply_at for j in rows],
        [j.form_type for j in rows],
        [" ".join(j.form_steps) for j in rows],
        [" ".join(j.steps) for j in rows],
    )
    if page.pairs:
        moved = sorted(page.pairs)
        await conn.execute(
            f"INSERT INTO {placement[PAIRS]} AS p (day, from_channel, to_channel, journeys)"
            " SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::bigint[])"
            " ON CONFLICT (day, from_channel, to_channel)"
            " DO UPDATE SET journeys = p.journeys + excluded.journeys",
            *(list(column) for column in zip(*moved, strict=True)),
            [page.pairs[k] for k in moved],
        )
    if page.funnel:
        keys = sorted(page.funnel)
        await conn.execute(
            f"INSERT INTO {placement[FUNNEL]} AS f (day, form_type, stage, stage_index, reached)"
            " SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::int[], $5::bigint[])"
            " ON CONFLICT (day, form_type, stage)"
            " DO UPDATE SET reached = f.reached + excluded.reached",
            *(list(column) for column in zip(*keys, strict=True)),
            [page.stage_index[k[1], k[2]] for k in keys],
            [page.funnel[k] for k in keys],
        )
    ended = sorted({key for values in page.endings.values() for key in values})
    if ended:
        names = (*_ENDING_COUNTS, *_ENDING_SECONDS)
        added = ", ".join(f"{n} = c.{n} + excluded.{n}" for n in names)
        await conn.execute(
            f"INSERT INTO {placement[ENDINGS]} AS c (day, channel, {', '.join(names)})"
            " SELECT * FROM unnest($1::date[], $2::text[], $3::bigint[], $4::bigint[],"
            " $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[],"
            " $10::float8[], $11::float8[])"
            f" ON CONFLICT (day, channel) DO UPDATE SET {added}",
            [k[0] for k in ended],
            [k[1] for k in ended],
            *([int(page.endings[n][k]) for k in ended] for n in _ENDING_COUNTS),
            *([page.endings[n][k] for k in ended] for n in _ENDING_SECONDS),
        )


class ChannelPair(msgspec.Struct, frozen=True, gc=False):
    """Journeys started on `from_channel` and continued on `to_channel`, in the period."""

    from_channel: str
    to_channel: str
    journeys: int


class Stage(msgspec.Struct, frozen=True, gc=False):
    """How many applications reached a stage of the form (started, a step, submitted)."""

    stage: str
    reached: int


class Funnel(msgspec.Struct, frozen=True, gc=False):
    form_type: str
    stages: list[Stage]
    """In the form's order: started, each step, submitted."""


class Endings(msgspec.Struct, frozen=True, gc=False):
    """What happened in the period to conversations the customer started on `channel`."""

    channel: str
    opened: int
    handed_off: int
    """Handed to a person (once per opening): `handed_off / opened` is the handoff rate."""
    resolved: int
    contained: int
    """Resolved without a handoff to a person: `contained / resolved` is bot containment."""
    resolution_seconds: float | None
    """The mean, from opening (or reopening) to resolution; null if none was resolved."""
    first_replies: int
    first_reply_seconds: float | None
    """The mean wait from a handoff to the first agent reply; null if none was answered."""
    ratings: int
    rating_sum: int
    """Of the ratings (1 to 5) customers gave: satisfaction is `rating_sum / ratings`."""


async def pairs(conn: Queryable, since: date, until: date) -> list[ChannelPair]:
    rows = await conn.fetch(
        f"SELECT from_channel, to_channel, sum(journeys)::bigint AS journeys FROM {PAIRS}"
        " WHERE day BETWEEN $1 AND $2 GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        since,
        until,
    )
    return [ChannelPair(**dict(row)) for row in rows]


async def funnels(conn: Queryable, since: date, until: date) -> list[Funnel]:
    rows = await conn.fetch(
        f"SELECT form_type, stage, min(stage_index) AS at, sum(reached)::bigint AS reached"
        f" FROM {FUNNEL} WHERE day BETWEEN $1 AND $2 GROUP BY 1, 2 ORDER BY 1, 3, 2",
        since,
        until,
    )
    found: dict[str, list[Stage]] = {}
    for row in rows:
        found.setdefault(row["form_type"], []).append(Stage(row["stage"], row["reached"]))
    return [Funnel(form, stages) for form, stages in found.items()]


async def endings(conn: Queryable, since: date, until: date) -> list[Endings]:
    rows = await conn.fetch(
        "SELECT channel, sum(opened)::bigint AS opened, sum(handed_off)::bigint AS handed_off,"
        " sum(resolved)::bigint AS resolved, sum(contained)::bigint AS contained,"
        " sum(resolution_seconds) / nullif(sum(resolved), 0) AS resolution_seconds,"
        " sum(first_replies)::bigint AS first_replies,"
        " sum(first_reply_seconds) / nullif(sum(first_replies), 0) AS first_reply_seconds,"
        " sum(ratings)::bigint AS ratings, sum(rating_sum)::bigint AS rating_sum"
        f" FROM {ENDINGS} WHERE day BETWEEN $1 AND $2 GROUP BY 1 ORDER BY 1",
        since,
        until,
    )
    return [Endings(**dict(row)) for row in rows]


DAILY_TABLES = {"journeys": PAIRS, "funnels": FUNNEL, "conversations": ENDINGS}
"""The tables behind each route, for a day-by-day export (the routes sum the period)."""


async def by_day(conn: Queryable, name: str, since: date, until: date) -> list[dict[str, object]]:
    """The rows of `DAILY_TABLES[name]` from `since` to `until`, day by day, as stored: counts
    and sums of seconds, no means (a mean of means would be wrong)."""
    table = DAILY_TABLES[name]
    rows = await conn.fetch(
        f"SELECT * FROM {table} WHERE day BETWEEN $1 AND $2 ORDER BY 1, 2, 3", since, until
    )
    return [dict(row) for row in rows]
