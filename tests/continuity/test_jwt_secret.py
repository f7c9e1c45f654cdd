"""The development JWT secret file: created private, refused when others may read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from uuid import uuid4

import pytest
from click.testing import CliRunner

from continuity.cli import main
from continuity.runtime import jwt_secret_path, resolve_jwt_secret
from continuity.settings import Settings, SettingsError
from tests.helpers import SECRET


def test_the_secret_file_is_created_private_and_read_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = resolve_jwt_secret(settings)
    path = jwt_secret_path(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert resolve_jwt_secret(settings) == first


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_secret_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    settings = Settings(data_dir=tmp_path)
    resolve_jwt_secret(settings)
    path = jwt_secret_path(settings)
    os.chmod(path, mode)
    with pytest.raises(SettingsError) as refused:
        resolve_jwt_secret(settings)
    assert str(path) in str(refused.value)
    assert "chmod 600" in str(refused.value)


def test_a_too_short_secret_file_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    path = jwt_secret_path(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("short\n")
    with pytest.raises(SettingsError, match="at least 32 characters"):
        resolve_jwt_secret(settings)


def test_the_configured_secret_needs_no_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "none", jwt_secret=SECRET)
    assert resolve_jwt_secret(settings) == SECRET
    assert not (tmp_path / "none").exists()


def test_the_token_command_names_the_file_to_fix(tmp_path: Path) -> None:
    env = {"CONTINUITY_DATA_DIR": str(tmp_path), "CONTINUITY_JWT_SECRET": None}
    runner = CliRunner()
    assert runner.invoke(main, ["token", "--agent", str(uuid4())], env=env).exit_code == 0
    os.chmod(tmp_path / "jwt.secret", 0o644)
    result = runner.invoke(main, ["token", "--agent", str(uuid4())], env=env)
    assert result.exit_code == 2
    assert "jwt.secret must not be readable by others" in result.output
    assert "chmod 600" in result.output
