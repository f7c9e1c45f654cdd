"""How the console's templates show values: times in UTC to the minute, ids by their first
eight characters, snake_case words as words."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from api.live_events import snake


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short(value: UUID | str | None) -> str:
    return "—" if value is None else str(value)[:8]


def words(value: str | None) -> str:
    """`handoff_requested` as "handoff requested", `conversation.turn_added` and `TurnAdded`
    as "turn added"."""
    if not value:
        return "—"
    return snake(value.rpartition(".")[2]).replace("_", " ")
