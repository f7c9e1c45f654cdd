"""What `continuity run` prints when it starts: where to reach it and how it is set up.

Short on purpose: one line per fact an operator needs at a glance, and never a secret (the
database URL is shown without its password, the keys and tokens not at all)."""

from __future__ import annotations

from urllib.parse import urlsplit

from continuity.embedded import embedded_log_path
from continuity.settings import Settings


def database_shown(settings: Settings) -> str:
    """The configured database as `user@host:port/name`, or the embedded one's directory."""
    if settings.database_url is None:
        return (
            f"embedded PostgreSQL in {settings.data_dir / 'postgres'}"
            f" (its output: {embedded_log_path(settings.data_dir)})"
        )
    parts = urlsplit(settings.database_url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    host = parts.hostname or "local socket"
    return f"{user}{host}{port}{parts.path or '/'}"


def banner(settings: Settings, host: str, port: int, workers: int = 1) -> str:
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}"
    idp = settings.idp
    tokens = f"issuer continuity, audience {settings.jwt_audience}" + (
        f"; identity provider {idp.issuer}, audience {idp.audience}" if idp else ""
    )
    cors = ", ".join(settings.cors_origins) if settings.cors_origins else "off"
    hint = "  (CONTINUITY_LOG_FORMAT=json for JSON lines)" if settings.log_format == "text" else ""
    lines = [
        "Continuity",
        f"  API       {url}",
        f"  workers   {workers} {'process' if workers == 1 else 'processes'}",
        f"  docs      {url}/schema  (OpenAPI: {url}/schema/openapi.json)",
        f"  database  {database_shown(settings)}, schema {settings.database_schema}",
        f"  tokens    {tokens}",
        f"  CORS      {cors}",
        f"  logs      {settings.log_format} at {settings.log_level} on stderr{hint}",
    ]
    return "\n".join(lines)
