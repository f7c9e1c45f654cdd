"""The `continuity` command, in-process with click's runner and as a real server process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import pytest
from click.testing import CliRunner

from api.auth import ContinuityToken
from continuity.cli import main
from continuity.runtime import Runtime
from continuity.settings import Settings
from privacy.master_key import MasterKey
from tests.helpers import SECRET
from tests.server import running_server


def drop_schema(url: str, schema: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    schema = f"test_cli_{uuid4().hex[:12]}"
    yield {
        "CONTINUITY_DATABASE_URL": database_url,
        "CONTINUITY_DATABASE_SCHEMA": schema,
        "CONTINUITY_MASTER_KEY": MasterKey.generate().to_text(),
        "CONTINUITY_JWT_SECRET": SECRET,
        "CONTINUITY_DATA_DIR": str(tmp_path / "data"),
    }
    drop_schema(database_url, schema)


def test_token_prints_a_signed_device_token(cli_env: dict[str, str]) -> None:
    customer = uuid4()
    result = CliRunner().invoke(
        main, ["token", "--customer", str(customer), "--device", "phone"], env=cli_env
    )
    assert result.exit_code == 0, result.output
    token = ContinuityToken.decode(
        result.output.strip(), SECRET, "HS256", audience="continuity", issuer="continuity"
    )
    assert (token.sub, token.role, token.device) == (str(customer), "customer", "phone")


def test_token_is_issued_for_the_configured_audience(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "CONTINUITY_JWT_AUDIENCE": "shop-api"}
    result = CliRunner().invoke(main, ["token", "--agent", str(uuid4())], env=env)
    assert result.exit_code == 0, result.output
    token = ContinuityToken.decode(result.output.strip(), SECRET, "HS256", audience="shop-api")
    assert (token.iss, token.aud, token.role) == ("continuity", "shop-api", "agent")


def test_token_for_a_bot_carries_the_service_role(cli_env: dict[str, str]) -> None:
    bot = uuid4()
    result = CliRunner().invoke(main, ["token", "--service", str(bot)], env=cli_env)
    assert result.exit_code == 0, result.output
    token = ContinuityToken.decode(result.output.strip(), SECRET, "HS256", audience="continuity")
    assert (token.sub, token.role, token.device) == (str(bot), "service", None)


def test_a_customer_token_needs_a_device(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["token", "--customer", str(uuid4())], env=cli_env)
    assert result.exit_code == 2
    assert "--device" in result.output


def test_bad_settings_are_a_usage_error(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["migrate"], env={**cli_env, "CONTINUITY_PORT": "x"})
    assert result.exit_code == 2
    assert "CONTINUITY_PORT must be a whole number" in result.output


def test_a_bad_form_definition_stops_the_start_naming_its_file_and_field(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    forms = tmp_path / "forms"
    forms.mkdir()
    (forms / "mortgage.json").write_text(
        '{"type": "mortgage", "version": 1, "title": "A mortgage", "steps": [{"name": "home",'
        ' "title": "Home", "fields": [{"name": "price", "label": "Price", "type": "money"}]}]}',
        encoding="utf-8",
    )
    env = {**cli_env, "CONTINUITY_FORMS_DIR": str(forms)}
    result = CliRunner().invoke(main, ["run", "--port", "1"], env=env)
    assert result.exit_code == 2, result.output
    assert "the form definitions cannot be used" in result.output
    assert (
        f"{forms}/mortgage.json: steps[0].fields[0].currency: a money field names its currency"
        in result.output
    )


def test_migrate_is_safe_to_run_twice(cli_env: dict[str, str]) -> None:
    first = CliRunner().invoke(main, ["migrate"], env=cli_env)
    assert first.exit_code == 0, first.output
    assert "0001_event_log.sql" in first.output
    second = CliRunner().invoke(main, ["migrate"], env=cli_env)
    assert "nothing (up to date)" in second.output


def test_the_server_process_serves_the_tour_and_erases_from_the_cli(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`continuity run` as a real process: two devices share a cart; then `erase-subject`
    makes the same requests answer 410."""
    with running_server(cli_env, tmp_path / "server.log") as base:
        customer = str(uuid4())
        runner = CliRunner()
        tokens = [
            runner.invoke(
                main, ["token", "--customer", customer, "--device", d], env=cli_env
            ).output.strip()
            for d in ("phone", "laptop")
        ]
        phone, laptop = ({"Authorization": f"Bearer {t}"} for t in tokens)
        item = {"sku": "MUG-1", "name": "Blue mug", "unit_price": "12.50", "quantity": 2}
        added = httpx.post(f"{base}/v1/me/cart/items", json=item, headers=phone)
        assert added.status_code == 200, added.text
        session = httpx.get(f"{base}/v1/me/session", headers=laptop).json()
        assert session["cart"]["items"][0]["quantity"] == 2

        email = {"kind": "email", "value": "cli.tour@example.org"}
        assert httpx.post(f"{base}/v1/me/identifiers", json=email, headers=phone).is_success
        erased = runner.invoke(main, ["erase-subject", customer, "--yes"], env=cli_env)
        assert erased.exit_code == 0, erased.output
        signed = json.loads(erased.output)
        certificate = signed["certificate"]
        assert certificate["events_unreadable"] == 2
        assert certificate["key_versions_destroyed"] == [1]
        assert signed["signature"]["algorithm"] == "Ed25519"
        key = runner.invoke(main, ["certificate", "public-key"], env=cli_env).output
        (tmp_path / "key.pem").write_text(key, encoding="ascii")
        (tmp_path / "certificate.json").write_text(erased.output, encoding="utf-8")
        files = [str(tmp_path / "certificate.json"), "--public-key", str(tmp_path / "key.pem")]
        checked = runner.invoke(main, ["certificate", "verify", *files])
        assert checked.exit_code == 0, checked.output
        assert certificate["identifiers_suppressed"] == 1
        lift = ["suppression", "lift", "--email", "CLI.Tour@example.org"]
        assert runner.invoke(main, lift, env=cli_env).output.strip() == "lifted"
        assert runner.invoke(main, lift, env=cli_env).output.strip() == "not suppressed"
        assert runner.invoke(main, ["suppression", "lift"], env=cli_env).exit_code == 2
        gone = httpx.get(f"{base}/v1/me/session", headers=laptop)
        assert gone.status_code == 410


def test_erase_subject_refuses_a_subject_under_a_legal_hold(cli_env: dict[str, str]) -> None:
    """The CLI honours a compliance officer's hold: nothing is erased until it is lifted."""
    settings = Settings.from_env(cli_env)
    customer, officer = uuid4(), uuid4()

    async def hold(place: bool) -> bool:
        url = cli_env["CONTINUITY_DATABASE_URL"]
        runtime = await Runtime.open(settings, url, build_stale=False)
        try:
            if place:
                await runtime.vault.key_for_writing(customer)  # the customer has data
                await runtime.holds.place(customer, officer, "litigation, case 118")
            else:
                await runtime.holds.lift(customer, officer)
            erased = await runtime.vault.erased_among([customer])
            return bool(erased)
        finally:
            await runtime.close()

    assert asyncio.run(hold(place=True)) is False
    refused = CliRunner().invoke(main, ["erase-subject", str(customer), "--yes"], env=cli_env)
    assert refused.exit_code == 1
    assert "legal hold" in refused.output
    assert "litigation" not in refused.output  # the reason is for compliance officers
    assert asyncio.run(hold(place=False)) is False  # still not erased
    erased = CliRunner().invoke(main, ["erase-subject", str(customer), "--yes"], env=cli_env)
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.output)["certificate"]["subject_id"] == str(customer)
