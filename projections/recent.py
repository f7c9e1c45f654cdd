"""How a session view keeps a customer's list of things (applications, conversations) bounded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID


class Active(Protocol):
    @property
    def last_activity(self) -> datetime: ...


V = TypeVar("V", bound=Active)


def kept(
    views: list[V], limit: int, *, finished: Callable[[V], bool], ident: Callable[[V], UUID]
) -> list[V]:
    """The most recently active first; past `limit`, the least recently active of the finished
    ones go (one still going always stays, however many there are)."""
    ordered = sorted(views, key=lambda v: v.last_activity, reverse=True)
    excess = len(ordered) - limit
    if excess <= 0:
        return ordered
    oldest_finished = [ident(v) for v in reversed(ordered) if finished(v)]
    gone = set(oldest_finished[:excess])
    return [v for v in ordered if ident(v) not in gone]
