"""Settings from the environment, checked up front with errors that say what to fix."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from aggregates.money import DEFAULT_CURRENCY, MINOR_UNITS
from continuity.db import check_schema_name
from continuity.identity_provider import (
    ALGORITHMS,
    IdentityProvider,
    check_jwks_url,
    load_public_key,
    parse_algorithms,
)

BUILT_IN_ISSUER = "continuity"
"""The `iss` of tokens Continuity signs itself (HS256, `continuity token`)."""
MIN_JWT_SECRET = 32
WORKERS_BY_DEFAULT = 4
"""The most worker processes `continuity run` starts unless told (`default_workers`)."""
MAX_WORKERS = 64

LogFormat = Literal["text", "json"]
PolicyName = Literal["conversations", "guests"]
POLICIES: tuple[PolicyName, ...] = ("conversations", "guests")
"""What retention by age can expire: conversation transcripts' turns (by the periods of their
keys), and idle guests (crypto-shredded whole)."""
_AGE = re.compile(r"(\d+)([dh]?)")


@dataclass(frozen=True)
class RetentionPolicy:
    """Data of kind `name` older than `max_age` is made unreadable by `continuity retention`."""

    name: PolicyName
    max_age: timedelta


class SettingsError(ValueError):
    """A configuration value is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Everything is optional: with nothing set, `continuity run` starts an embedded PostgreSQL
    under `data_dir`, creates a master key file there, and serves on 127.0.0.1:8000."""

    database_url: str | None = None
    database_schema: str = "continuity"
    master_key: str | None = field(default=None, repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_audience: str = "continuity"
    idp: IdentityProvider | None = None
    data_dir: Path = Path(".continuity")
    host: str = "127.0.0.1"
    port: int = 8000
    pool_min_size: int = 2
    pool_max_size: int = 16
    """With the six connections each process holds outside its pool, four workers fit in
    PostgreSQL's default `max_connections` of 100 (`continuity.workers`)."""
    pool_timeout: float = 5.0
    """Seconds a request waits for a pooled connection (making one included) before it is
    answered 503 `database-unavailable`."""
    statement_timeout: float = 10.0
    """Seconds PostgreSQL lets one statement of the server's run (lock waits included) before
    cancelling it; the request is answered 503 `database-unavailable`."""
    shutdown_grace: float = 10.0
    """Seconds a stopping server (SIGTERM) gives requests in flight to finish."""
    token_ttl_seconds: int = 30 * 24 * 3600
    log_level: str = "INFO"
    currency: str = DEFAULT_CURRENCY
    """The ISO 4217 currency of a cart opened without one, and of carts recorded before carts
    had a currency."""
    log_format: LogFormat = "text"
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    """Networks in CIDR notation, checked and normalised (a plain address is a /32 or /128)."""
    rate_limit_per_minute: int = 120
    workers: int = 1
    """Server processes `continuity run` starts; `from_env` defaults it to `default_workers`."""
    forms_dir: Path | None = None
    """The operator's form definitions (`*.json`, `*.toml`); the bundled ones when unset."""
    application_idle_days: int = 30
    """Days an application may sit untouched before it expires."""
    sse_keepalive: float = 15.0
    """Seconds between keep-alive comments on an idle live update stream."""
    device_token_days: int = 30
    """Days a device token (from `POST /v1/sessions`, a handoff code or sign-in) lasts."""
    handoff_minutes: int = 5
    """Minutes a handoff code can be redeemed in."""
    redeem_failures: int = 10
    """Wrong handoff codes one client may send in 15 minutes before it must wait."""
    erasure_journal: Path | None = None
    """The file the erasure journal is copied to (`continuity.erasure_journal.journal_file`
    says where it goes when unset): keep it apart from the database's backups."""
    key_period_days: int = 30
    """Days a subject's data key is written with before the next one is created (0: keys do
    not roll over); what retention by age destroys a period at a time."""
    retention: tuple[RetentionPolicy, ...] = ()
    """Retention by age (`CONTINUITY_RETENTION`): nothing expires unless configured."""
    retention_interval: float | None = None
    """Seconds between two retention runs inside the server (None: only `continuity
    retention run` applies the policies)."""
    console: bool = True
    """Serve the console at `/console`; off, the process serves the API alone."""
    console_secure_cookies: bool = False
    """Mark the console's cookies `Secure` even on plain HTTP: behind a proxy that ends TLS
    without saying so (they are `Secure` whenever the request itself came over HTTPS)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(f"CONTINUITY_{name}")
            return value.strip() or None if value is not None else None

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(
                    f"CONTINUITY_{name} must be a whole number, got {raw!r}"
                ) from None
            if not low <= value <= high:
                raise SettingsError(f"CONTINUITY_{name} must be between {low} and {high}")
            return value

        def seconds(name: str, default: float, high: float) -> float:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(
                    f"CONTINUITY_{name} must be a number of seconds, got {raw!r}"
                ) from None
            if not 0 < value <= high:
                raise SettingsError(
                    f"CONTINUITY_{name} must be more than 0 and at most {high:g} seconds"
                )
            return value

        def flag(name: str, default: bool = False) -> bool:
            raw = text(name)
            if raw is None:
                return default
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            raise SettingsError(f"CONTINUITY_{name} must be true or false, got {raw!r}")

        schema = text("DATABASE_SCHEMA") or cls.database_schema
        try:
            check_schema_name(schema)
        except ValueError as exc:
            raise SettingsError(f"CONTINUITY_DATABASE_SCHEMA: {exc}") from None
        url = text("DATABASE_URL")
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise SettingsError("CONTINUITY_DATABASE_URL must start with postgresql://")
        level = (text("LOG_LEVEL") or cls.log_level).upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError("CONTINUITY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        secret = text("JWT_SECRET")
        if secret is not None and len(secret) < MIN_JWT_SECRET:
            raise SettingsError(
                f"CONTINUITY_JWT_SECRET must be at least {MIN_JWT_SECRET} characters"
            )
        audience = text("JWT_AUDIENCE") or cls.jwt_audience
        currency = text("CURRENCY") or cls.currency
        if currency not in MINOR_UNITS:
            raise SettingsError(
                f"CONTINUITY_CURRENCY must be an ISO 4217 currency code such as EUR or USD,"
                f" got {currency!r}"
            )
        pool_min = integer("POOL_MIN_SIZE", cls.pool_min_size, 1, 1000)
        pool_max = integer("POOL_MAX_SIZE", cls.pool_max_size, 1, 1000)
        if pool_min > pool_max:
            raise SettingsError("CONTINUITY_POOL_MIN_SIZE must not exceed CONTINUITY_POOL_MAX_SIZE")
        return cls(
            database_url=url,
            database_schema=schema,
            master_key=text("MASTER_KEY"),
            jwt_secret=secret,
            jwt_audience=audience,
            idp=_identity_provider(text),
            data_dir=Path(text("DATA_DIR") or cls.data_dir),
            host=text("HOST") or cls.host,
            port=integer("PORT", cls.port, 1, 65535),
            pool_min_size=pool_min,
            pool_max_size=pool_max,
            pool_timeout=seconds("POOL_TIMEOUT", cls.pool_timeout, 600),
            statement_timeout=seconds("STATEMENT_TIMEOUT", cls.statement_timeout, 24 * 3600),
            shutdown_grace=seconds("SHUTDOWN_GRACE", cls.shutdown_grace, 3600),
            token_ttl_seconds=integer("TOKEN_TTL_SECONDS", cls.token_ttl_seconds, 60, 10**8),
            log_level=level,
            currency=currency,
            log_format=_log_format(text("LOG_FORMAT")),
            cors_origins=_cors_origins(text("CORS_ORIGINS")),
            trusted_proxies=_trusted_proxies(text("TRUSTED_PROXIES")),
            rate_limit_per_minute=integer("RATE_LIMIT", cls.rate_limit_per_minute, 0, 10**6),
            workers=integer(
                "WORKERS", default_workers(shares_machine=database_is_local(url)), 1, MAX_WORKERS
            ),
            forms_dir=_path(text("FORMS_DIR")),
            application_idle_days=integer(
                "APPLICATION_IDLE_DAYS", cls.application_idle_days, 1, 3650
            ),
            sse_keepalive=seconds("SSE_KEEPALIVE", cls.sse_keepalive, 3600),
            device_token_days=integer("DEVICE_TOKEN_DAYS", cls.device_token_days, 1, 3650),
            handoff_minutes=integer("HANDOFF_MINUTES", cls.handoff_minutes, 1, 60),
            redeem_failures=integer("REDEEM_FAILURES", cls.redeem_failures, 1, 1000),
            erasure_journal=_path(text("ERASURE_JOURNAL")),
            key_period_days=integer("KEY_PERIOD_DAYS", cls.key_period_days, 0, 3650),
            retention=retention_policies(text("RETENTION")),
            retention_interval=(
                seconds("RETENTION_INTERVAL", 3600, 7 * 24 * 3600)
                if text("RETENTION_INTERVAL") is not None
                else None
            ),
            console=flag("CONSOLE", default=True),
            console_secure_cookies=flag("CONSOLE_SECURE_COOKIES"),
        )

    @property
    def key_period(self) -> timedelta | None:
        return timedelta(days=self.key_period_days) if self.key_period_days else None


def retention_policies(raw: str | None) -> tuple[RetentionPolicy, ...]:
    """`conversations=730d,guests=30d`: each policy once, its age in days (`d`, or a bare
    number) or hours (`h`), more than zero."""
    if raw is None:
        return ()
    found: dict[PolicyName, RetentionPolicy] = {}
    for part in raw.split(","):
        name, sep, age = (piece.strip() for piece in part.partition("="))
        if not sep or name not in POLICIES:
            raise SettingsError(
                f"CONTINUITY_RETENTION: {part.strip()!r} is not one of"
                f" {', '.join(f'{p}=AGE' for p in POLICIES)}"
            )
        match = _AGE.fullmatch(age)
        if match is None or int(match.group(1)) == 0:
            raise SettingsError(
                f"CONTINUITY_RETENTION: the age of {name} is a number of days such as 730d,"
                f" or hours such as 48h, more than zero; got {age!r}"
            )
        if name in found:
            raise SettingsError(f"CONTINUITY_RETENTION: {name} is given twice")
        count = int(match.group(1))
        if count > 100 * 366 * (24 if match.group(2) == "h" else 1):
            raise SettingsError(f"CONTINUITY_RETENTION: the age of {name} is at most 100 years")
        max_age = timedelta(hours=count) if match.group(2) == "h" else timedelta(days=count)
        policy: PolicyName = "conversations" if name == "conversations" else "guests"
        found[policy] = RetentionPolicy(policy, max_age)
    return tuple(found.values())


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def database_is_local(url: str | None) -> bool:
    """Whether the database runs on this machine: the embedded one (no URL), a loopback
    address, or a Unix socket (no host, or libpq's `host=/dir` parameter)."""
    if url is None:
        return True
    parts = urlsplit(url)
    host = parts.hostname or parse_qs(parts.query).get("host", ["/"])[0]
    if host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_workers(*, shares_machine: bool, cores: int | None = None) -> int:
    """What suits the machine: one worker per core, up to `WORKERS_BY_DEFAULT`; half the cores
    when PostgreSQL runs on the same machine (embedded, or on a loopback address), since it
    needs them too: 1 on a 2-core machine.

    The cap is the connection budget: each worker has its own pool of up to
    `CONTINUITY_POOL_MAX_SIZE` (20) connections, and 4 x 20 stays inside PostgreSQL's default
    `max_connections` of 100 with room for the CLI and a migration. docs/operations.md has the
    measurement behind the rule."""
    if cores is None:
        cores = usable_cores()
    return max(1, min(WORKERS_BY_DEFAULT, cores // 2 if shares_machine else cores))


def _identity_provider(text: Callable[[str], str | None]) -> IdentityProvider | None:
    """CONTINUITY_IDP_*: an external issuer of tokens, or None when none of them is set."""
    issuer = text("IDP_ISSUER")
    audience = text("IDP_AUDIENCE")
    jwks_url = text("IDP_JWKS_URL")
    public_key = text("IDP_PUBLIC_KEY")
    algorithms = text("IDP_ALGORITHMS")
    if issuer is None:
        given = [
            f"CONTINUITY_IDP_{name}"
            for name, value in [
                ("AUDIENCE", audience),
                ("JWKS_URL", jwks_url),
                ("PUBLIC_KEY", public_key),
                ("ALGORITHMS", algorithms),
            ]
            if value is not None
        ]
        if given:
            raise SettingsError(
                f"{given[0]} is set but CONTINUITY_IDP_ISSUER is not: set it to the `iss` your"
                " identity provider puts in its tokens, or unset the CONTINUITY_IDP_ variables"
            )
        return None
    if issuer == BUILT_IN_ISSUER:
        raise SettingsError(
            f"CONTINUITY_IDP_ISSUER must differ from {BUILT_IN_ISSUER!r}, the issuer of"
            " Continuity's own tokens"
        )
    if audience is None:
        raise SettingsError(
            "CONTINUITY_IDP_AUDIENCE is required with CONTINUITY_IDP_ISSUER: the `aud` your"
            " identity provider puts in tokens meant for this API"
        )
    if (jwks_url is None) == (public_key is None):
        raise SettingsError(
            "set exactly one of CONTINUITY_IDP_JWKS_URL (the identity provider's JWKS URL) and"
            " CONTINUITY_IDP_PUBLIC_KEY (its public key as PEM text)"
        )
    try:
        chosen = parse_algorithms(algorithms) if algorithms is not None else ALGORITHMS
    except ValueError as exc:
        raise SettingsError(f"CONTINUITY_IDP_ALGORITHMS {exc}") from None
    if jwks_url is not None:
        try:
            check_jwks_url(jwks_url)
        except ValueError as exc:
            raise SettingsError(f"CONTINUITY_IDP_JWKS_URL {exc}") from None
    if public_key is not None:
        try:
            _, algorithm = load_public_key(public_key)
        except ValueError as exc:
            raise SettingsError(f"CONTINUITY_IDP_PUBLIC_KEY {exc}") from None
        if algorithm not in chosen:
            raise SettingsError(
                f"CONTINUITY_IDP_PUBLIC_KEY is a key for {algorithm}, which"
                f" CONTINUITY_IDP_ALGORITHMS ({', '.join(chosen)}) does not allow"
            )
    return IdentityProvider(issuer, audience, jwks_url, public_key, chosen)


def _log_format(raw: str | None) -> LogFormat:
    if raw is None or raw.lower() == "text":
        return "text"
    if raw.lower() == "json":
        return "json"
    raise SettingsError(f"CONTINUITY_LOG_FORMAT must be json or text, got {raw!r}")


def _cors_origins(raw: str | None) -> tuple[str, ...]:
    """CONTINUITY_CORS_ORIGINS: `*`, or origins (`https://app.example.com[:port]`), comma-separated.

    An origin is compared as a browser sends it, so a path, a trailing slash or a wildcard in
    the host would never match: those are refused rather than silently never allowing anything.
    """
    if raw is None:
        return ()
    origins = tuple(part.strip() for part in raw.split(",") if part.strip())
    if origins == ("*",):
        return origins
    for origin in origins:
        parts = urlsplit(origin)
        if (
            parts.scheme not in {"http", "https"}
            or not parts.hostname
            or "*" in origin
            or f"{parts.scheme}://{parts.netloc}" != origin
        ):
            raise SettingsError(
                f"CONTINUITY_CORS_ORIGINS: {origin!r} is not an origin like"
                " https://app.example.com or http://localhost:5173 (no path, no trailing slash),"
                " nor `*` alone"
            )
    return origins


def _trusted_proxies(raw: str | None) -> tuple[str, ...]:
    """CONTINUITY_TRUSTED_PROXIES: addresses or networks (CIDR), comma-separated."""
    if raw is None:
        return ()
    networks: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise SettingsError(
                f"CONTINUITY_TRUSTED_PROXIES: {part!r} is not an IP address or network"
                " (e.g. 10.0.0.5 or 10.0.0.0/8)"
            ) from None
    return tuple(networks)
