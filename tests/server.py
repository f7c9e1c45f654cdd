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

from privacy.master_key import MasterKey
from tests.helpers import SECRET


def server_env(database_url: str, schema: str, data_dir: Path, **more: str) -> dict[str, str]:
    """What `continuity run` needs to serve `schema` of the test database: a master key of its
    own, the tests' JWT secret and `data_dir`; each of `more` is a `CONTINUITY_<NAME>` setting
    (`log_level="WARNING"`)."""
    return {
        "CONTINUITY_DATABASE_URL": database_url,
        "CONTINUITY_DATABASE_SCHEMA": schema,
        "CONTINUITY_MASTER_KEY": MasterKey.generate().to_text(),
        "CONTINUITY_JWT_SECRET": SECRET,
        "CONTINUITY_DATA_DIR": str(data_dir),
        **{f"CONTINUITY_{name.upper()}": value for name, value in more.items()},
    }


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
