"""`continuity run` as a real server process, for tests that need one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server_process(
    env: dict[str, str], out: Path, *, cwd: Path | None = None, timeout: float = 60
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start `continuity run` with `env` (on a free port), its stdout in `out` and its stderr
    in `out` + `.err`; yield its base URL and process once `/health` answers 200; stop it
    (SIGTERM) unless it has stopped already. One worker process unless `env` says otherwise,
    whatever the machine's default."""
    port = free_port()
    full = {**os.environ, "CONTINUITY_WORKERS": "1", **env, "CONTINUITY_PORT": str(port)}
    errors = out.with_name(out.name + ".err")
    with out.open("wb") as stdout, errors.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "continuity.cli", "run"],
            env=full,
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, out.read_text() + errors.read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        yield base, server
    finally:
        server.terminate()
        server.wait(20)


@contextmanager
def running_server(
    env: dict[str, str], out: Path, *, cwd: Path | None = None, timeout: float = 60
) -> Iterator[str]:
    """`server_process`, for a test that needs only the URL."""
    with server_process(env, out, cwd=cwd, timeout=timeout) as (base, _):
        yield base
