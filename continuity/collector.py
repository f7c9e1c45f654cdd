"""How the cyclic garbage collector is kept out of the way: of a rebuild folding the log, and of
requests once the server has started.

A rebuild allocates millions of short-lived objects (a row, an event, its envelope, a state per
event) that reference counting frees at once; nothing it makes forms a cycle. CPython still
runs a young collection every 700 net allocations of tracked objects, and each one walks the
page being folded: about a fifth of a rebuild's time went there (docs/benchmarks.md). While
any rebuild runs, the first generation's threshold is raised; the last one out puts it back.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

REBUILD_THRESHOLD = 50_000
"""Net allocations between young collections while a rebuild runs (CPython's default: 700)."""

_running = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the young generation's threshold for the duration (process-wide, so requests
    served meanwhile collect less often too; memory is still freed by reference counting)."""
    global _running, _saved
    if _running == 0:
        _saved = gc.get_threshold()
        gc.set_threshold(max(REBUILD_THRESHOLD, _saved[0]), *_saved[1:])
    _running += 1
    try:
        yield
    finally:
        _running -= 1
        if _running == 0:
            gc.set_threshold(*_saved)


def freeze_start_up() -> None:
    """Move everything alive once the server has started (modules, the app, its routes and
    schemas, the pools) out of the collector's sight: it is never garbage, yet every full
    collection walked it again, a pause that showed in the p99 of requests
    (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
