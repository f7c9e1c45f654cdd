"""Settings come from the environment, and bad values are named clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from continuity.settings import Settings, SettingsError


def test_nothing_set_means_the_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.data_dir == Path(".continuity")


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
    ],
)
def test_bad_values_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({name: value})


def test_the_jwt_audience_defaults_to_continuity_and_is_read() -> None:
    assert Settings.from_env({}).jwt_audience == "continuity"
    assert Settings.from_env({"CONTINUITY_JWT_AUDIENCE": "shop-api"}).jwt_audience == "shop-api"
