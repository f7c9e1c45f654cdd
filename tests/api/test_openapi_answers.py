"""The served OpenAPI schema says what each operation answers: every status it can return,
problems in RFC 9457's shape with their catalog types, ETags, and the header formats."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from api.problems import PROBLEM_TYPES

PROBLEM = "application/problem+json"
APPLICATION = "/v1/me/applications/{application_id}"

WRITE_WITH_BODY = {
    "200",
    "400",
    "401",
    "403",
    "404",
    "409",
    "410",
    "413",
    "415",
    "422",
    "500",
    "503",
}
READ_ONE = {"200", "400", "401", "403", "404", "410", "500", "503"}
CONVERSATION_READS = [
    ("get", f"{prefix}/conversations/{{conversation_id}}")
    for prefix in ("/v1/me", "/v1/agent", "/v1/service")
]
CONVERSATION_WRITES_WITH_BODY = [
    *(f"/v1/me/conversations/{{conversation_id}}/{a}" for a in ("turns", "handoff", "rating")),
    *(f"/v1/agent/conversations/{{conversation_id}}/{a}" for a in ("turns", "transfer")),
    *(f"/v1/service/conversations/{{conversation_id}}/{a}" for a in ("turns", "handoff")),
]
CONVERSATION_WRITES = [
    *(f"/v1/me/conversations/{{conversation_id}}/{a}" for a in ("resolve", "reopen")),
    *(f"/v1/agent/conversations/{{conversation_id}}/{a}" for a in ("accept", "resolve")),
]
REGISTRATIONS = ["/v1/me/identifiers", "/v1/service/inbound"]

EXPECTED: dict[tuple[str, str], set[str]] = {
    ("get", "/v1/me/session"): {"200", "304", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/me/cart"): {"200", "304", "400", "401", "403", "404", "410", "500", "503"},
    ("post", "/v1/me/sync"): {
        *("200", "400", "401", "403", "409", "410", "413", "415", "422", "500", "503"),
    },
    ("post", "/v1/me/cart/items"): {
        *("200", "400", "401", "403", "409", "410", "412", "413", "415", "422", "500", "503"),
    },
    ("patch", "/v1/me/cart/items/{sku}"): {
        *(
            "200",
            "400",
            "401",
            "403",
            "404",
            "409",
            "410",
            "412",
            "413",
            "415",
            "422",
            "500",
            "503",
        ),
    },
    ("delete", "/v1/me/cart/items/{sku}"): {
        *("200", "400", "401", "403", "404", "409", "410", "412", "422", "500", "503"),
    },
    ("post", "/v1/me/cart/checkout"): {
        *("200", "400", "401", "403", "404", "409", "410", "412", "422", "500", "503"),
    },
    ("get", "/v1/me/applications"): {"200", "304", "400", "401", "403", "410", "500", "503"},
    ("post", "/v1/me/applications"): {
        *("201", "400", "401", "403", "404", "409", "410", "413", "415", "422", "500", "503"),
    },
    ("get", APPLICATION): {"200", "304", "400", "401", "403", "404", "410", "500", "503"},
    **{
        ("post" if action != "/steps/{step}/draft" else "patch", APPLICATION + action): {
            *(
                "200",
                "400",
                "401",
                "403",
                "404",
                "409",
                "410",
                "412",
                "413",
                "415",
                "422",
                "500",
                "503",
            ),
        }
        for action in ("/steps/{step}/draft", "/steps/{step}/complete", "/back")
    },
    **{
        ("post", APPLICATION + action): {
            *("200", "400", "401", "403", "404", "409", "410", "412", "422", "500", "503"),
        }
        for action in ("/submit", "/withdraw")
    },
    ("get", "/v1/agent/customers/{customer_id}/session"): {
        *("200", "400", "401", "403", "404", "410", "500", "503"),
    },
    ("get", "/v1/agent/applications"): {"200", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/agent/applications/{application_id}"): {
        *("200", "400", "401", "403", "404", "410", "500", "503"),
    },
    ("get", "/v1/me/conversations"): {"200", "304", "400", "401", "403", "410", "500", "503"},
    ("post", "/v1/me/conversations"): {*WRITE_WITH_BODY, "201"} - {"200", "404"},
    **{(m, p): READ_ONE for m, p in CONVERSATION_READS},
    **{("post", p): WRITE_WITH_BODY for p in CONVERSATION_WRITES_WITH_BODY},
    **{("post", p): WRITE_WITH_BODY - {"413", "415"} for p in CONVERSATION_WRITES},
    **{("post", p): WRITE_WITH_BODY - {"404"} for p in REGISTRATIONS},
    ("post", "/v1/agent/customers/{customer_id}/identifiers"): WRITE_WITH_BODY,
    ("get", "/v1/agent/conversations"): {"200", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/agent/customers/{customer_id}/timeline"): {
        *("200", "400", "401", "403", "404", "410", "500", "503"),
    },
    ("get", "/v1/me/timeline"): {"200", "304", "400", "401", "403", "410", "500", "503"},
    ("post", "/v1/me/activity"): WRITE_WITH_BODY - {"404"},
    ("get", "/v1/me/preferences"): {"200", "304", "400", "401", "403", "410", "500", "503"},
    ("put", "/v1/me/preferences"): WRITE_WITH_BODY - {"404"},
    ("get", "/v1/me/consents"): {"200", "304", "400", "401", "403", "410", "500", "503"},
    ("put", "/v1/me/consents"): (WRITE_WITH_BODY - {"404"}) | {"412"},
    ("get", "/v1/me/consents/{purpose}"): {
        "200",
        "304",
        "400",
        "401",
        "403",
        "404",
        "410",
        "500",
        "503",
    },
    ("put", "/v1/me/consents/{purpose}"): WRITE_WITH_BODY | {"412"},
    ("get", "/v1/privacy/subjects/{subject_id}/consents"): {
        *("200", "400", "401", "403", "404", "410", "500", "503"),
    },
    ("get", "/v1/analytics/daily"): {"200", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/analytics/journeys"): {"200", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/analytics/funnels"): {"200", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/analytics/conversations"): {"200", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/me/session/events"): {"200", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/agent/conversations/events"): {"200", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/agent/customers/{customer_id}/events"): {
        *("200", "400", "401", "403", "404", "410", "500", "503"),
    },
    ("get", "/health"): {"200", "429", "500", "503"},
    ("get", "/ready"): {"200", "429", "500", "503"},
    ("get", "/metrics"): {"200", "429", "500", "503"},
    ("post", "/v1/sessions"): {"201", "400", "413", "415", "422", "429", "500", "503"},
    ("post", "/v1/sessions/redeem"): {
        *("201", "400", "409", "410", "413", "415", "422", "429", "500", "503"),
    },
    ("post", "/v1/me/handoff"): {"201", "401", "403", "410", "500", "503"},
    ("get", "/v1/me/devices"): {"200", "304", "400", "401", "403", "410", "500", "503"},
    ("delete", "/v1/me/devices/{device_id}"): {
        "204",
        "400",
        "401",
        "403",
        "404",
        "410",
        "500",
        "503",
    },
    ("post", "/v1/me/link"): {
        *("200", "400", "401", "403", "409", "410", "413", "415", "422", "500", "503"),
    },
    ("get", "/.well-known/continuity-signing-key"): {"200", "429", "500", "503"},
    ("get", "/v1/privacy/subjects/{subject_id}/export"): {
        *("200", "400", "401", "403", "404", "410", "500", "503"),
    },
    ("get", "/v1/me/export"): {"200", "304", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/privacy/audit"): {"200", "400", "401", "403", "410", "500", "503"},
    ("post", "/v1/privacy/erasures"): {*WRITE_WITH_BODY, "201"} - {"409"},
    ("get", "/v1/privacy/erasures"): {"200", "400", "401", "403", "410", "500", "503"},
    ("get", "/v1/privacy/erasures/{request_id}"): READ_ONE,
    ("get", "/v1/privacy/erasures/{request_id}/certificate"): {*READ_ONE, "409"},
    ("get", "/v1/privacy/subjects/{subject_id}/hold"): READ_ONE,
    ("put", "/v1/privacy/subjects/{subject_id}/hold"): WRITE_WITH_BODY,
    ("delete", "/v1/privacy/subjects/{subject_id}/hold"): READ_ONE,
    ("delete", "/v1/privacy/suppressions"): {*WRITE_WITH_BODY, "204"} - {"200", "409"},
    ("post", "/v1/me/erasure"): {"202", "401", "403", "410", "500", "503"},
}


EVENT_STREAMS = {
    "/v1/me/session/events",
    "/v1/agent/customers/{customer_id}/events",
    "/v1/agent/conversations/events",
}
"""Server-Sent Events: a stream has no one version, so no ETag."""


@pytest.fixture
async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200
    schema: dict[str, Any] = answer.json()
    return schema


def _operations(openapi: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
    }


@pytest.mark.anyio
async def test_every_operation_lists_the_statuses_it_answers(openapi: dict[str, Any]) -> None:
    operations = _operations(openapi)
    assert set(operations) == set(EXPECTED), "a new operation: say here what it answers"
    for key, operation in operations.items():
        assert set(operation["responses"]) == EXPECTED[key], key


@pytest.mark.anyio
async def test_errors_are_problems_with_the_catalog_types(openapi: dict[str, Any]) -> None:
    problem = openapi["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert {"instance", "field", "errors", "current_version", "token_expired"} <= set(
        problem["properties"]
    )
    assert problem["additionalProperties"] is False
    catalog = {kind.uri: kind.status for kind in PROBLEM_TYPES}
    for key, operation in _operations(openapi).items():
        for code, answer in operation["responses"].items():
            if not code.startswith(("4", "5")) or code == "503":
                continue
            content = answer["content"]
            assert list(content) == [PROBLEM], (key, code)
            schema = content[PROBLEM]["schema"]
            assert schema["allOf"][0] == {"$ref": "#/components/schemas/Problem"}
            narrowed = schema["allOf"][1]["properties"]
            assert narrowed["status"]["const"] == int(code)
            for uri in narrowed["type"]["enum"]:
                assert catalog[uri] == int(code), (key, code, uri)


@pytest.mark.anyio
async def test_specific_problems_are_where_they_apply(openapi: dict[str, Any]) -> None:
    def types(method: str, path: str, code: str) -> set[str]:
        answer = openapi["paths"][path][method]["responses"][code]
        enum = answer["content"][PROBLEM]["schema"]["allOf"][1]["properties"]["type"]["enum"]
        return {uri.rsplit("/", 1)[-1] for uri in enum}

    assert types("get", "/v1/me/cart", "404") == {"no-cart"}
    assert types("post", "/v1/me/cart/items", "412") == {"stale-version", "weak-etag"}
    assert types("get", "/v1/me/session", "401") == {
        "missing-token",
        "invalid-token",
        "token-expired",
    }
    assert {"idempotency-key-reused", "invalid-value"} <= types("post", "/v1/me/cart/items", "422")
    assert types("post", "/v1/me/cart/items", "415") == {"unsupported-media-type"}
    assert "consent-required" in types("post", "/v1/me/activity", "403")
    assert "consent-required" not in types("put", "/v1/me/preferences", "403")
    for bot_or_agent in ("/v1/agent", "/v1/service"):
        turns = f"{bot_or_agent}/conversations/{{conversation_id}}/turns"
        assert "consent-required" in types("post", turns, "403")
    assert "consent-required" not in types(
        "post", "/v1/me/conversations/{conversation_id}/turns", "403"
    )
    assert "stale-version" in types("put", "/v1/me/consents/{purpose}", "412")
    assert "not-found" in types("get", "/v1/me/consents/{purpose}", "404")
    assert types("get", "/health", "429") == {"rate-limited"}
    certificate = "/v1/privacy/erasures/{request_id}/certificate"
    assert types("get", certificate, "409") == {"erasure-not-completed"}
    unauthorized = openapi["paths"]["/v1/me/cart"]["get"]["responses"]["401"]
    assert "WWW-Authenticate" in unauthorized["headers"]
    assert "Retry-After" in openapi["paths"]["/health"]["get"]["responses"]["429"]["headers"]
    assert types("post", "/v1/me/cart/items", "503") == {"database-unavailable"}
    unavailable = openapi["paths"]["/v1/me/cart/items"]["post"]["responses"]["503"]
    assert "Retry-After" in unavailable["headers"]


@pytest.mark.anyio
async def test_etags_and_header_formats_are_documented(openapi: dict[str, Any]) -> None:
    for (_, path), operation in _operations(openapi).items():
        if path.startswith("/v1/me/") and path not in EVENT_STREAMS:
            responses = operation["responses"]
            success = [answer for code, answer in responses.items() if code[0] == "2"]
            assert success, path
            for code, answer in responses.items():
                if code[0] == "2" and code != "204":  # 204: no representation to tag
                    assert answer["headers"]["ETag"]["required"], path
    assert "ETag" in openapi["paths"]["/v1/me/cart"]["get"]["responses"]["304"]["headers"]
    stale = openapi["paths"]["/v1/me/cart/checkout"]["post"]["responses"]["412"]
    assert "ETag" in stale["headers"]
    parameters = {
        parameter["name"]: parameter["schema"]
        for parameter in openapi["paths"]["/v1/me/cart/items"]["post"]["parameters"]
    }
    if_match = re.compile(parameters["If-Match"]["pattern"])
    assert if_match.search('"3"')
    assert if_match.search("*")
    assert not if_match.search('W/"3"')
    assert not if_match.search("3")
    assert not if_match.search('"' + "1" * 19 + '"'), "at most 18 digits"
    assert parameters["Idempotency-Key"] == {
        **parameters["Idempotency-Key"],
        "type": "string",
        "format": "uuid",
    }
    channels = {"web", "app", "chat", "email", "sms", "phone", "store"}
    assert set(parameters["X-Channel"]["enum"]) == channels
    if_none_match = openapi["paths"]["/v1/me/session"]["get"]["parameters"][0]["schema"]
    assert re.search(if_none_match["pattern"], '"a", W/"b"')


@pytest.mark.anyio
async def test_bodies_refuse_unknown_fields_in_the_schema_too(openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    assert components["AddItem"]["additionalProperties"] is False
    assert components["ChangeQuantity"]["additionalProperties"] is False


@pytest.mark.anyio
async def test_event_streams_are_documented_as_such(openapi: dict[str, Any]) -> None:
    for path in EVENT_STREAMS:
        operation = openapi["paths"][path]["get"]
        assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
        last_event_id = {p["name"]: p for p in operation["parameters"]}["Last-Event-ID"]
        pattern = re.compile(last_event_id["schema"]["pattern"])
        assert pattern.search("42")
        assert not pattern.search("-1")
        assert not pattern.search("1" * 19)
