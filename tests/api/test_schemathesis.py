"""Schemathesis fuzzes a real server against its own OpenAPI schema, with every check: no 5xx,
and each answer's status, content type, headers and body as the schema says.

Bounded so that it stays a unit of `make test`: Hypothesis derandomized (a fixed seed), a few
hundred cases per operation and mode (valid and invalid data), once with a valid customer token
and once with a refused one. The server is `continuity run` over the test PostgreSQL, so what
is fuzzed is what is deployed: uvicorn, every middleware, the real store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode

from api.app import create_app
from api.auth import issue_token
from api.openapi import ENTITY_TAGS, IF_MATCH
from continuity.settings import Settings
from tests.continuity.test_cli import drop_schema
from tests.helpers import SECRET
from tests.server import running_server, server_env

CASES = 250
"""Examples per operation and generation mode, with a valid token."""
REFUSED_CASES = 40
"""With a refused token: the token is checked before anything a request carries, so what
varies the answer is only the route (public or not) and the path; forty examples an operation
cover that, and keep the suite's time from growing by a 250-example run per route."""

FUZZED = settings(
    max_examples=CASES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
FUZZED_REFUSED = settings(FUZZED, max_examples=REFUSED_CASES)


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    schema = f"test_fuzz_{uuid4().hex[:12]}"
    logs: Path = tmp_path_factory.mktemp("fuzz")
    env = server_env(database_url, schema, logs / "data", log_level="WARNING")
    try:
        with running_server(env, logs / "server.log") as base:
            yield base
    finally:
        drop_schema(database_url, schema)


def _own_schema() -> dict[str, Any]:
    """The app's schema as built for serving; `test_the_server_serves_the_fuzzed_schema` holds
    it to what the server answers at /schema/openapi.json. (Loaded before the server starts,
    since Schemathesis makes the tests from it when this module is collected.)"""
    app = create_app(Settings(jwt_secret=SECRET), database_url="postgresql://unused/")
    return app.openapi_schema.to_schema()


OWN_SCHEMA = _own_schema()
schema = schemathesis.openapi.from_dict(OWN_SCHEMA)
schema.config.checks.positive_data_acceptance.expected_statuses = [
    *schema.config.checks.positive_data_acceptance.expected_statuses,
    "410",
    "412",
    "422",
]
"""A request the schema accepts may still be refused for the state it meets, as documented:
410 (erased), 412 (a stale If-Match), 422 (a price finer than the currency's minor unit, a
quantity past the maximum, an Idempotency-Key reused for another body)."""
schema.config.checks.negative_data_rejection.expected_statuses = [
    *schema.config.checks.negative_data_rejection.expected_statuses,
    "413",
]
"""A body the schema refuses may also pass the 64 KiB limit (a turn's text of 10,001 characters
outside the BMP, each written as a 12-byte escape pair): it is refused as 413 before it is
parsed, as documented."""


def test_the_server_serves_the_fuzzed_schema(server: str) -> None:
    assert httpx.get(f"{server}/schema/openapi.json").json() == OWN_SCHEMA


QUOTED_HEADERS = {"If-Match": IF_MATCH, "If-None-Match": ENTITY_TAGS}
"""Headers whose values hold `"`. Schemathesis 4's coverage phase writes header values in
ASCII letters and digits only, so for these it fills a *positive* case with a value the
pattern refuses (`If-Match: 0`), and then expects it accepted. Such a value is dropped from
the case (the headers are optional, so the case stays valid); negative cases keep theirs."""


def _integers_as_written(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integers_as_written(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers_as_written(item) for item in value]
    return value


def _as_the_schema_means(case: Case[Any]) -> None:
    """Undo what Schemathesis generates for a positive case that the schema cannot rule out:
    JSON Schema counts 2.0 as an integer, and the API, decoding strictly, takes only 2 (the
    schema's description says so; `test_input_contract` holds the API to it). No body of
    the API has a number that is not an integer."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    case.body = _integers_as_written(case.body)
    for name, pattern in QUOTED_HEADERS.items():
        value = case.headers.get(name) if case.headers else None
        if isinstance(value, str) and re.search(pattern, value) is None:
            del case.headers[name]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


VALID = _bearer(issue_token(SECRET, uuid4(), "customer", "phone", timedelta(hours=2)))
REFUSED = _bearer(
    issue_token("another-secret-" + "y" * 40, uuid4(), "customer", "phone", timedelta(hours=2))
)


EVENT_STREAMS = "/v1/me/session/events"
"""A customer's own event stream is left out of the valid-token fuzzing: a request it accepts
never ends (Server-Sent Events), and so neither would the test. Its answers are tested in
tests/api/test_live_updates.py (200 streams, 400 for a bad Last-Event-ID, 401, 403); with a
refused token it is fuzzed like every other operation."""
SELF_ERASURE = "/v1/me/erasure"
"""Left out of the valid-token fuzzing too: it erases the fuzzing customer, after which every
other operation would only answer 410. It takes no body or parameter to fuzz; its answers are
tested in tests/api/test_erasure_requests.py, and with a refused token it is fuzzed here."""
EXPORT = "/v1/me/export"
"""Fuzzed with a few examples only: it takes no body and no parameter, and its answer holds the
fuzzing customer's whole history, which every other operation's examples grow, so validating
250 of them against the schema costs time quadratic in the run (minutes, for nothing new)."""
EXPORT_CASES = 5
STAFF_ONLY = r"^/v1/(agent|privacy|service|analytics)/"
"""Operations for agents, compliance officers and services: a customer's token is refused by
their guard before anything the request carries is read (Litestar checks guards before it
parses parameters or the body), so, as with a refused token, only the route and the path vary
the answer, and `REFUSED_CASES` examples cover it."""
_STREAMLESS = schema.exclude(path=EVENT_STREAMS).exclude(path=SELF_ERASURE).exclude(path=EXPORT)


@_STREAMLESS.exclude(path_regex=STAFF_ONLY).parametrize()
@FUZZED
def test_a_customer_gets_only_documented_answers(case: Case[Any], server: str) -> None:
    _as_the_schema_means(case)
    case.call_and_validate(base_url=server, headers=VALID)


@schema.include(path_regex=STAFF_ONLY).parametrize()
@FUZZED_REFUSED
def test_a_customer_gets_only_documented_answers_from_staff_routes(
    case: Case[Any], server: str
) -> None:
    _as_the_schema_means(case)
    case.call_and_validate(base_url=server, headers=VALID)


@schema.include(path=EXPORT).parametrize()
@settings(FUZZED, max_examples=EXPORT_CASES)
def test_a_customer_gets_only_documented_answers_from_the_export(
    case: Case[Any], server: str
) -> None:
    _as_the_schema_means(case)
    case.call_and_validate(base_url=server, headers=VALID)


@schema.parametrize()
@FUZZED_REFUSED
def test_a_refused_token_gets_only_documented_answers(case: Case[Any], server: str) -> None:
    _as_the_schema_means(case)
    case.call_and_validate(base_url=server, headers=REFUSED)
