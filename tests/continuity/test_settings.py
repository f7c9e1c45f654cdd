"""Settings come from the environment, and bad values are named clearly."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from continuity.erasure_journal import journal_file
from continuity.identity_provider import IdentityProvider, load_public_key
from continuity.settings import (
    WORKERS_BY_DEFAULT,
    Settings,
    SettingsError,
    database_is_local,
    default_workers,
)


def test_nothing_set_means_the_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.data_dir == Path(".continuity")


def test_the_console_flags_read_true_or_false_and_refuse_anything_else() -> None:
    default = Settings.from_env({})
    assert (default.console, default.console_secure_cookies) == (True, False)
    flipped = Settings.from_env(
        {"CONTINUITY_CONSOLE": "false", "CONTINUITY_CONSOLE_SECURE_COOKIES": "yes"}
    )
    assert (flipped.console, flipped.console_secure_cookies) == (False, True)
    with pytest.raises(SettingsError, match="CONTINUITY_CONSOLE must be true or false"):
        Settings.from_env({"CONTINUITY_CONSOLE": "maybe"})


def test_the_keep_alive_interval_is_read_in_seconds() -> None:
    assert Settings.from_env({}).sse_keepalive == 15.0
    assert Settings.from_env({"CONTINUITY_SSE_KEEPALIVE": "0.25"}).sse_keepalive == 0.25
    timeouts = Settings.from_env(
        {
            "CONTINUITY_POOL_TIMEOUT": "1.5",
            "CONTINUITY_STATEMENT_TIMEOUT": "30",
            "CONTINUITY_SHUTDOWN_GRACE": "2",
        }
    )
    assert (timeouts.pool_timeout, timeouts.statement_timeout, timeouts.shutdown_grace) == (
        1.5,
        30,
        2,
    )


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "CONTINUITY_DATABASE_URL": "postgresql://u@db:5432/app",
            "CONTINUITY_PORT": "9001",
            "CONTINUITY_HOST": "::1",
            "CONTINUITY_DATABASE_SCHEMA": "tenant_1",
        }
    )
    assert settings.database_url == "postgresql://u@db:5432/app"
    assert settings.port == 9001
    assert settings.host == "::1"
    assert settings.database_schema == "tenant_1"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CONTINUITY_PORT", "eighty", "CONTINUITY_PORT must be a whole number"),
        ("CONTINUITY_PORT", "70000", "CONTINUITY_PORT must be between 1 and 65535"),
        ("CONTINUITY_DATABASE_URL", "mysql://x", "must start with postgresql://"),
        ("CONTINUITY_DATABASE_SCHEMA", "Robert'); DROP", "CONTINUITY_DATABASE_SCHEMA"),
        ("CONTINUITY_JWT_SECRET", "short", "at least 32 characters"),
        ("CONTINUITY_LOG_LEVEL", "LOUD", "CONTINUITY_LOG_LEVEL"),
        ("CONTINUITY_SSE_KEEPALIVE", "soon", "CONTINUITY_SSE_KEEPALIVE must be a number"),
        ("CONTINUITY_SSE_KEEPALIVE", "0", "CONTINUITY_SSE_KEEPALIVE must be more than 0"),
        ("CONTINUITY_POOL_TIMEOUT", "0", "CONTINUITY_POOL_TIMEOUT must be more than 0"),
        ("CONTINUITY_STATEMENT_TIMEOUT", "x", "CONTINUITY_STATEMENT_TIMEOUT must be a number"),
        ("CONTINUITY_SHUTDOWN_GRACE", "-1", "CONTINUITY_SHUTDOWN_GRACE must be more than 0"),
        ("CONTINUITY_SSE_KEEPALIVE", "-1", "CONTINUITY_SSE_KEEPALIVE must be more than 0"),
        ("CONTINUITY_SSE_KEEPALIVE", "nan", "CONTINUITY_SSE_KEEPALIVE must be more than 0"),
    ],
)
def test_bad_values_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({name: value})


def test_the_jwt_audience_defaults_to_continuity_and_is_read() -> None:
    assert Settings.from_env({}).jwt_audience == "continuity"
    assert Settings.from_env({"CONTINUITY_JWT_AUDIENCE": "shop-api"}).jwt_audience == "shop-api"


IDP = {
    "CONTINUITY_IDP_ISSUER": "https://idp.example.test/realms/shop",
    "CONTINUITY_IDP_AUDIENCE": "continuity-api",
}


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def test_no_identity_provider_unless_configured() -> None:
    assert Settings.from_env({}).idp is None


def test_an_identity_provider_with_a_jwks_url() -> None:
    url = "https://idp.example.test/realms/shop/protocol/openid-connect/certs"
    idp = Settings.from_env({**IDP, "CONTINUITY_IDP_JWKS_URL": url}).idp
    assert idp == IdentityProvider(
        "https://idp.example.test/realms/shop",
        "continuity-api",
        jwks_url=url,
        algorithms=("RS256", "ES256", "EdDSA"),
    )


def test_an_identity_provider_with_a_public_key_and_algorithms() -> None:
    pem = public_pem(Ed25519PrivateKey.generate())
    env = {
        **IDP,
        "CONTINUITY_IDP_PUBLIC_KEY": pem.replace("\n", "\\n"),  # one line, as some envs need
        "CONTINUITY_IDP_ALGORITHMS": "eddsa, RS256",
    }
    idp = Settings.from_env(env).idp
    assert idp is not None
    assert idp.algorithms == ("EdDSA", "RS256")
    assert load_public_key(idp.public_key or "")[1] == "EdDSA"


def test_loopback_jwks_urls_may_be_plain_http() -> None:
    env = {**IDP, "CONTINUITY_IDP_JWKS_URL": "http://127.0.0.1:8080/jwks.json"}
    assert Settings.from_env(env).idp is not None


BAD_IDP = [
    ({"CONTINUITY_IDP_AUDIENCE": "a"}, "CONTINUITY_IDP_AUDIENCE is set but CONTINUITY_IDP_ISSUER"),
    ({"CONTINUITY_IDP_JWKS_URL": "https://x.test/j"}, "CONTINUITY_IDP_ISSUER is not"),
    (
        {"CONTINUITY_IDP_ISSUER": "https://idp.test", "CONTINUITY_IDP_JWKS_URL": "https://x/j"},
        "CONTINUITY_IDP_AUDIENCE is required",
    ),
    ({**IDP, "CONTINUITY_IDP_ISSUER": "continuity"}, "must differ from 'continuity'"),
    (IDP, "set exactly one of CONTINUITY_IDP_JWKS_URL"),
    (
        {**IDP, "CONTINUITY_IDP_JWKS_URL": "https://x.test/j", "CONTINUITY_IDP_PUBLIC_KEY": "-"},
        "set exactly one of CONTINUITY_IDP_JWKS_URL",
    ),
    ({**IDP, "CONTINUITY_IDP_JWKS_URL": "http://idp.test/j"}, "must be an https:// URL"),
    ({**IDP, "CONTINUITY_IDP_JWKS_URL": "idp.test/jwks"}, "must be an https:// URL"),
    (
        {
            **IDP,
            "CONTINUITY_IDP_JWKS_URL": "https://x.test/j",
            "CONTINUITY_IDP_ALGORITHMS": "HS256",
        },
        "never trusted",
    ),
    (
        {**IDP, "CONTINUITY_IDP_JWKS_URL": "https://x.test/j", "CONTINUITY_IDP_ALGORITHMS": "none"},
        "never trusted",
    ),
    (
        {
            **IDP,
            "CONTINUITY_IDP_JWKS_URL": "https://x.test/j",
            "CONTINUITY_IDP_ALGORITHMS": "PS512",
        },
        "CONTINUITY_IDP_ALGORITHMS may list only RS256, ES256, EdDSA",
    ),
    (
        {**IDP, "CONTINUITY_IDP_JWKS_URL": "https://x.test/j", "CONTINUITY_IDP_ALGORITHMS": ","},
        "must list at least one",
    ),
    ({**IDP, "CONTINUITY_IDP_PUBLIC_KEY": "/etc/idp.pem"}, "not a file path"),
    (
        {**IDP, "CONTINUITY_IDP_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC"},
        "CONTINUITY_IDP_PUBLIC_KEY is not a readable PEM public key",
    ),
]


@pytest.mark.parametrize(("env", "message"), BAD_IDP, ids=[m for _, m in BAD_IDP])
def test_bad_identity_provider_settings_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("key", "algorithms", "message"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), None, "at least 2048"),  # noqa: S505
        (lambda: ec.generate_private_key(ec.SECP384R1()), None, "needs P-256"),
        (lambda: Ed25519PrivateKey.generate(), "RS256,ES256", "a key for EdDSA, which"),
    ],
    ids=["rsa-1024", "ec-p384", "ed25519-not-allowed"],
)
def test_a_public_key_must_suit_the_accepted_algorithms(
    key: Callable[[], rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey],
    algorithms: str | None,
    message: str,
) -> None:
    env = {**IDP, "CONTINUITY_IDP_PUBLIC_KEY": public_pem(key())}
    if algorithms:
        env["CONTINUITY_IDP_ALGORITHMS"] = algorithms
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_the_public_key_may_be_given_as_a_certificate() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    idp = Settings.from_env({**IDP, "CONTINUITY_IDP_PUBLIC_KEY": pem}).idp
    assert idp is not None
    loaded, algorithm = load_public_key(idp.public_key or "")
    assert algorithm == "ES256"
    assert loaded == key.public_key()


def test_operations_settings_default_to_off_text_and_a_modest_rate_limit() -> None:
    settings = Settings.from_env({})
    assert settings.cors_origins == ()
    assert settings.trusted_proxies == ()
    assert settings.log_format == "text"
    assert settings.rate_limit_per_minute == 120


def test_operations_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "CONTINUITY_CORS_ORIGINS": "https://app.example.com, http://localhost:5173",
            "CONTINUITY_TRUSTED_PROXIES": "10.0.0.5, 192.168.0.0/16,::1",
            "CONTINUITY_LOG_FORMAT": "JSON",
            "CONTINUITY_RATE_LIMIT": "0",
        }
    )
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:5173")
    assert settings.trusted_proxies == ("10.0.0.5/32", "192.168.0.0/16", "::1/128")
    assert settings.log_format == "json"
    assert settings.rate_limit_per_minute == 0
    assert Settings.from_env({"CONTINUITY_CORS_ORIGINS": "*"}).cors_origins == ("*",)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CONTINUITY_CORS_ORIGINS", "https://app.example.com/", "not an origin"),
        ("CONTINUITY_CORS_ORIGINS", "app.example.com", "not an origin"),
        ("CONTINUITY_CORS_ORIGINS", "https://*.example.com", "not an origin"),
        ("CONTINUITY_CORS_ORIGINS", "*,https://app.example.com", "not an origin"),
        ("CONTINUITY_TRUSTED_PROXIES", "10.0.0.300", "not an IP address or network"),
        ("CONTINUITY_LOG_FORMAT", "xml", "CONTINUITY_LOG_FORMAT must be json or text"),
        ("CONTINUITY_RATE_LIMIT", "-1", "CONTINUITY_RATE_LIMIT must be between"),
    ],
)
def test_bad_operations_settings_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


def test_workers_are_read_and_checked() -> None:
    assert Settings.from_env({"CONTINUITY_WORKERS": "3"}).workers == 3
    for bad in ("0", "two", "65"):
        with pytest.raises(SettingsError, match="CONTINUITY_WORKERS"):
            Settings.from_env({"CONTINUITY_WORKERS": bad})


@pytest.mark.parametrize(
    ("url", "local"),
    [
        (None, True),  # the embedded database
        ("postgresql://postgres@127.0.0.1:5432/app", True),
        ("postgresql://localhost/app", True),
        ("postgresql://[::1]:5432/app", True),
        ("postgresql:///app", True),  # the default Unix socket
        ("postgresql://postgres:@/postgres?host=/tmp/pg", True),  # the embedded one's URL
        ("postgresql://u@db.example.com:5432/app", False),
        ("postgresql://u@10.0.0.5/app", False),
    ],
)
def test_a_database_on_this_machine_is_recognised(url: str | None, local: bool) -> None:
    assert database_is_local(url) is local


@pytest.mark.parametrize(
    ("cores", "shares_machine", "workers"),
    [
        (1, False, 1),
        (2, False, 2),
        (16, False, WORKERS_BY_DEFAULT),  # the pools' connections bound it
        (1, True, 1),
        (2, True, 1),  # PostgreSQL needs the other core
        (4, True, 2),
        (16, True, WORKERS_BY_DEFAULT),
    ],
)
def test_the_default_workers_suit_the_machine(
    cores: int, shares_machine: bool, workers: int
) -> None:
    assert default_workers(shares_machine=shares_machine, cores=cores) == workers


def test_the_erasure_journal_file_is_per_schema_under_the_data_dir_unless_set() -> None:
    default = Settings.from_env(
        {"CONTINUITY_DATA_DIR": "/srv/c", "CONTINUITY_DATABASE_SCHEMA": "shop"}
    )
    assert default.erasure_journal is None
    assert journal_file(default) == Path("/srv/c/erasure-journal.shop.jsonl")
    chosen = Settings.from_env({"CONTINUITY_ERASURE_JOURNAL": "/mnt/journal/erasures.jsonl"})
    assert journal_file(chosen) == Path("/mnt/journal/erasures.jsonl")
