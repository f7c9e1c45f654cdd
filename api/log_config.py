"""Litestar's logging configuration, with the process's logging set up by `continuity.logs`.

Litestar's `LoggingConfig` decides which exceptions are logged and which without a stack trace;
its own handler set-up (a queue handler per app, its own format) is replaced by
`continuity.logs.configure`, so Litestar's records come out in the same format, text or JSON,
with the request id, as everyone else's."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from litestar.logging import LoggingConfig

from continuity import logs
from continuity.settings import LogFormat


@dataclass
class ContinuityLogging(LoggingConfig):
    level: str = "INFO"
    format: LogFormat = "text"

    def configure(self) -> Any:
        logs.configure(self.level, self.format)
        return logging.getLogger
