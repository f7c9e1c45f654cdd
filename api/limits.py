"""The limits every request is held to, in one place (docs/api.md lists them)."""

from __future__ import annotations

from aggregates.cart import MAX_LINES, MAX_QUANTITY
from aggregates.money import AMOUNT_BOUND

MAX_BODY_BYTES = 64 * 1024
"""A request body, in bytes: larger is 413 before it is parsed."""
MAX_DEPTH = 8
"""How deeply arrays and objects may nest in a body: deeper is 400 before it is parsed."""
MAX_BATCH = 100
"""Actions in one batch request (for the offline-queue sync route)."""
MAX_SKU = 64
MAX_NAME = 200
MAX_VERSION_DIGITS = 18
"""Digits of a version in If-Match (versions stay far below 10^18)."""

__all__ = [
    "AMOUNT_BOUND",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_LINES",
    "MAX_NAME",
    "MAX_QUANTITY",
    "MAX_SKU",
    "MAX_VERSION_DIGITS",
]
