"""`continuity run` as a real process: a short start-up banner with no secret, the embedded
PostgreSQL's chatter in a file, and logs as one JSON event per line when asked."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import httpx

from tests.continuity.test_cli import cli_env  # noqa: F401  (a fixture)
from tests.server import running_server

MAX_BANNER_LINES = 10


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or ""  # none: a socket directory in the query (the embedded server)
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def test_the_banner_says_where_and_how_and_never_the_password(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    password = "pw-" + uuid4().hex
    env = {
        **cli_env,
        "CONTINUITY_DATABASE_URL": with_password(cli_env["CONTINUITY_DATABASE_URL"], password),
        "CONTINUITY_CORS_ORIGINS": "https://app.example.com",
    }
    out = tmp_path / "out.txt"
    with running_server(env, out) as base:
        pass
    banner = out.read_text()
    lines = banner.splitlines()
    assert 0 < len(lines) <= MAX_BANNER_LINES, banner
    assert f"API       {base}" in banner
    assert f"{base}/schema" in banner
    host = urlsplit(cli_env["CONTINUITY_DATABASE_URL"]).hostname or "local socket"
    assert f"@{host}" in banner
    assert f"schema {cli_env['CONTINUITY_DATABASE_SCHEMA']}" in banner
    assert "https://app.example.com" in banner
    assert "text at INFO" in banner
    everything = banner + (tmp_path / "out.txt.err").read_text()
    assert password not in everything
    assert cli_env["CONTINUITY_JWT_SECRET"] not in everything
    assert cli_env["CONTINUITY_MASTER_KEY"] not in everything


def test_json_logs_are_one_event_per_line_with_the_request_id(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.txt"
    env = {**cli_env, "CONTINUITY_LOG_FORMAT": "json"}
    with running_server(env, out) as base:
        answered = httpx.get(f"{base}/v1/me/session?email=jane@example.com")
        assert answered.status_code == 401
    rid = answered.headers["x-request-id"]
    lines = (tmp_path / "out.txt.err").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is one JSON event
    assert all({"time", "level", "logger", "message"} <= event.keys() for event in events)
    access = [
        e for e in events if e["logger"] == "continuity.access" and e.get("request_id") == rid
    ]
    assert len(access) == 1
    assert (access[0]["method"], access[0]["route"], access[0]["status"]) == (
        "GET",
        "/v1/me/session",
        401,
    )
    assert any(e["logger"].startswith("uvicorn") for e in events)
    text = "\n".join(lines)
    assert "jane@example.com" not in text
    assert "127.0.0.1:" not in text.replace(base, "")  # no client address (uvicorn's access log)
    assert "json at INFO" in out.read_text()


def test_the_embedded_database_writes_its_output_to_a_file(
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "CONTINUITY_DATABASE_URL"}
    data = Path(env["CONTINUITY_DATA_DIR"])
    out = tmp_path / "out.txt"
    with running_server(env, out, timeout=120):
        pass
    terminal = out.read_text() + (tmp_path / "out.txt.err").read_text()
    assert "initdb" not in terminal
    assert "pixeltable" not in terminal
    assert len(terminal.splitlines()) <= 25, terminal
    assert f"embedded PostgreSQL in {data / 'postgres'}" in terminal
    assert "initdb" in (data / "postgres.log").read_text()
