"""The app of one worker process of `continuity run --workers N`.

uvicorn starts each worker as a fresh interpreter and builds the app there by calling `app`
(its import string is `WORKER_APP`). The parent has already done what must happen once
(`continuity/workers.py`): it started the embedded database if there is one, created the key
files, migrated and rebuilt stale projections, and put the database's URL in the environment
this process inherited. So a worker only connects, and never starts a database of its own.
"""

from __future__ import annotations

import logging
import sys

from litestar import Litestar
from uvicorn.config import STARTUP_FAILURE

from api.app import create_app
from continuity import logs
from continuity.settings import Settings, SettingsError

WORKER_APP = "api.worker:app"


def app() -> Litestar:
    """Logging as the parent's (a spawned process starts with none), then the app.

    A configuration the worker cannot start with exits with uvicorn's start-up failure status,
    which stops the whole server; any other exit would have the parent start it again, and
    again. (The parent checked the same settings, so this takes a change between the two, such
    as a key file made readable by others.)"""
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level, settings.log_format, with_pid=True)
        logging.captureWarnings(True)
        return create_app(settings, build_stale=False)
    except SettingsError as exc:
        logging.getLogger("continuity.workers").error("this worker cannot start: %s", exc)
        sys.exit(STARTUP_FAILURE)
