"""Constants and types shared by tests."""

from __future__ import annotations

from collections.abc import Callable

SECRET = "test-secret-" + "x" * 40

TokenFactory = Callable[..., dict[str, str]]
"""auth(customer_id, device="phone", role="customer") -> headers with a bearer token."""
