"""Logging for a Continuity process: one event per line, as text or JSON
(`CONTINUITY_LOG_FORMAT`), each line carrying the id of the request it belongs to.

Built on the standard library's `logging` with a small JSON formatter, not structlog: every
library in this process (uvicorn, Litestar, asyncpg) already logs through `logging`, so one
handler on the root logger turns all of their records into the same JSON with no second
pipeline to bridge, and the encoding is msgspec's, already a dependency. The request id lives
in a context variable that the API sets per request (`api/request_context.py`); a filter copies
it onto each record where the record is made, so it survives any handler or thread.

Nothing here adds personal data: what a line says is up to the code that logs it, and the rule
for that (ids and versions only) is in docs/architecture.md.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

import msgspec

from continuity.settings import LogFormat

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the request being served, None outside a request."""

_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}
"""A record's own attributes; anything else on a record came from `extra=` and is a field."""

_encoder = msgspec.json.Encoder()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "pid", "request_id"?, ...extra fields,
    "exception"?}` on one line: newlines inside a message or a traceback are escaped by JSON.
    `pid` tells apart the lines of the workers of `continuity run --workers N`."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if rid := getattr(record, "request_id", None):
            event["request_id"] = rid
        event.update(_fields(record))
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return _encoder.encode({k: _plain(v) for k, v in event.items()}).decode()


def _plain(value: object) -> object:
    """What msgspec encodes as is; anything else as its text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [request_id=…] [field=value …]` for a terminal; with
    `with_pid` (several workers) `time LEVEL [pid] logger: …`."""

    def __init__(self, *, with_pid: bool = False) -> None:
        pid = "[%(process)d] " if with_pid else ""
        super().__init__(f"%(asctime)s %(levelname)s {pid}%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _fields(record)
        if rid := getattr(record, "request_id", None):
            extras = {"request_id": rid, **extras}
        if not extras:
            return text
        line, _, rest = text.partition("\n")
        context = " ".join(f"{k}={v}" for k, v in extras.items())
        return f"{line} [{context}]" + (f"\n{rest}" if rest else "")


class _Handler(logging.StreamHandler[TextIO]):
    """The one handler `configure` installs, recognised when it is called again."""


_pid_in_text = False
"""What the last `configure` that said so chose for `with_pid`."""


def configure(
    level: str, fmt: LogFormat, stream: TextIO | None = None, *, with_pid: bool | None = None
) -> None:
    """Send every logger's records to `stream` (stderr) as `fmt`, at `level` and above; text
    lines name their process `with_pid` (JSON lines always do). Without `with_pid`, as the last
    call that gave it: the app configures logging again when it starts (`api/log_config.py`),
    and keeps what `continuity run` chose for its workers.

    Idempotent: a second call replaces the handler the first installed, and leaves any other
    handler on the root logger (a test's log capture, say) alone."""
    global _pid_in_text
    if with_pid is not None:
        _pid_in_text = with_pid
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(with_pid=_pid_in_text))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("litestar", "uvicorn", "uvicorn.error"):
        # Litestar's and uvicorn's own configurations give these handlers of their own; here
        # they go through the root's, in the chosen format.
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
