"""The npm packages of the peers under bench/peers: Message DB's SQL scripts and Emmett.

They are pinned by bench/peers/package-lock.json and installed with `npm ci` on first use (or by
`make bench-peers`). Where node or npm is missing, or the install fails, the peers that need them
are skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PEERS = Path(__file__).resolve().parent / "peers"
LOCK = PEERS / "package-lock.json"
INSTALLED = PEERS / "node_modules" / ".package-lock.json"
"""npm's record of what `npm ci` installed; newer than the lock file once installed."""


class PeerUnavailable(RuntimeError):
    """A peer cannot run on this machine; the message says why."""


def node() -> str:
    path = shutil.which("node")
    if path is None:
        raise PeerUnavailable("node is not on PATH")
    return path


def node_modules() -> Path:
    """bench/peers/node_modules, installed from the lock file if it is missing or stale."""
    if INSTALLED.exists() and INSTALLED.stat().st_mtime >= LOCK.stat().st_mtime:
        return PEERS / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable("npm is not on PATH (needed for `npm ci` in bench/peers)")
    try:
        subprocess.run(  # noqa: S603 (a fixed command: npm from PATH, no input of ours)
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEERS,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or error.stdout or "").strip().splitlines()[-3:]
        raise PeerUnavailable(f"`npm ci` in bench/peers failed: {' | '.join(detail)}") from error
    except subprocess.TimeoutExpired as error:
        raise PeerUnavailable("`npm ci` in bench/peers took more than 300 s") from error
    return PEERS / "node_modules"
