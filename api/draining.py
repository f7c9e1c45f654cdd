"""Ending live streams when the server is told to stop.

On SIGTERM or SIGINT uvicorn stops accepting connections and then waits for every response in
progress to finish before it runs the app's lifespan shutdown. An event stream never finishes
by itself, so the server would wait for ever (or until a graceful-shutdown timeout cuts every
request short). While the app runs, the server's handler of those signals is chained: the
callback (the live feed's `stop`, which ends every stream; its clients reconnect, to another
process, with `Last-Event-ID`) runs first, then the server's own handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def on_stop_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Run `callback` on the event loop when a stop signal arrives, for as long as the context
    lasts, then the handler that was there before. A signal whose handler is the default (or
    ignored) is left alone: no server is waiting on it. Only the main thread may do this."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    chained: dict[signal.Signals, Callable[[int, FrameType | None], Any]] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nothing left to stop
            loop.call_soon_threadsafe(callback)
        chained[signal.Signals(signum)](signum, frame)

    for signum in STOP_SIGNALS:
        previous = signal.getsignal(signum)
        if callable(previous):
            chained[signum] = previous
            signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, previous in chained.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)
