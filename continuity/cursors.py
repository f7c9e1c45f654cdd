"""Opaque keyset cursors: the sort key of a page's last row, handed to the client and back."""

from __future__ import annotations

import base64
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class BadCursor(ValueError):
    """A cursor this list did not hand out."""


def encode(key: Any) -> str:
    raw = msgspec.json.encode(key)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, key_type: type[T]) -> T:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=key_type)
    except (ValueError, msgspec.DecodeError):
        raise BadCursor("the cursor is not one this list gave") from None
