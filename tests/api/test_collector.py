"""What the server made while starting is frozen out of the garbage collector's sight."""

from __future__ import annotations

import gc

import pytest

from tests.conftest import AppFactory

pytestmark = pytest.mark.anyio


async def test_start_up_freezes_what_it_made(started: AppFactory) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with started():
        assert gc.get_freeze_count() > 0
