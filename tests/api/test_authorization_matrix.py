"""The authorization matrix: every route of the app by every kind of caller, with the answer due.

The routes come from the app's own route table, so a route added without a rule in `RULES`
fails `test_every_route_has_a_rule`. Each rule says who may call the route (nobody needs a
token for a public one) and how to build one valid request for it. Then, per route, every kind
of caller sends that request:

- no token, an expired one, one with a wrong signature, one for another audience: 401 with a
  `WWW-Authenticate: Bearer` challenge, on every route that needs a token;
- a valid token whose role may not use the route: a 403 problem;
- a caller the rule allows: the route's success status, never 401 or 403.

The agent, service and compliance tokens, and the bad tokens, all carry the first customer's
subject id as `sub`: a token naming a customer is not the customer's token unless it is valid
and has the customer role. A second customer must never see or change the first's data; every
route is `/v1/me/...`, so their token reads and writes their own, empty, state.

Litestar's generated `OPTIONS` handler (one per path) has no rule of its own: `OPTIONS` needs no
token on any path (docs/api.md, CORS), which `test_options_needs_no_token_anywhere` checks.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from litestar import Litestar, get
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from aggregates.application import Application
from aggregates.conversation import Conversation
from api.app import create_app
from api.auth import Role, issue_token
from api.console.cookies import in_console
from continuity.settings import Settings
from tests.conftest import AppFactory, client_of
from tests.helpers import SECRET

pytestmark = pytest.mark.anyio

PUBLIC: frozenset[Role] = frozenset()
"""`Rule.roles` of a route that needs no token: every caller gets its answer."""

APPLICATION = "/v1/me/applications/{application_id:uuid}"
SEEDED_START = UUID("7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f")
"""The Idempotency-Key of the seeded application's start: its id follows from it and the
customer (`Application.create_id`), so a rule's path can name it."""
SEEDED_OPEN = UUID("2b8e4f61-0c3d-4a7e-9f12-6d5c8b3a1e07")
"""The Idempotency-Key that opened the seeded conversation (`Conversation.open_id`)."""
CONVERSATION = "/v1/me/conversations/{conversation_id:uuid}"
AGENT_CONVERSATION = "/v1/agent/conversations/{conversation_id:uuid}"
BOT_CONVERSATION = "/v1/service/conversations/{conversation_id:uuid}"
SEEDED_SKU = "MATRIX-1"
SEEDED_NAME = "Matrix seeded mug"
"""What the first customer's cart holds before each route is called: a second customer's
answers must never mention it."""


@dataclass(frozen=True)
class Rule:
    """Who may call a route, and one valid request for it."""

    roles: frozenset[Role]
    ok: frozenset[int] = frozenset({200})
    """The statuses an allowed caller gets for the request below (a domain 4xx is allowed here
    where that is the right answer, never 401 or 403)."""
    newcomer: frozenset[int] | None = None
    """What an allowed caller with no data yet (a second customer) gets, if not `ok`: their own
    empty state, which for a change to an item they never added is a 404."""
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    """Headers the request needs besides the token (an agent's `X-Purpose`)."""
    stream: bool = False
    """Server-Sent Events: the app's live feed is stopped before the requests, so an allowed
    caller's stream ends after its first message (an endless one hangs the in-process client;
    tests/api/test_live_updates.py reads live streams from a real server)."""

    @property
    def public(self) -> bool:
        return not self.roles


CUSTOMER: frozenset[Role] = frozenset({"customer"})
AGENT: frozenset[Role] = frozenset({"agent"})
SERVICE: frozenset[Role] = frozenset({"service"})
COMPLIANCE: frozenset[Role] = frozenset({"compliance"})
CHOICE = {"given": True, "policy_version": "2026-01"}
HOLD = "/v1/privacy/subjects/{subject_id:uuid}/hold"
NOBODY = {"email": "matrix-nobody@example.org"}
"""An identifier no customer has: an officer's erasure request for it is a 404, so no caller
erases the first customer before their own requests."""
PURPOSE = {"X-Purpose": "the authorization matrix"}
TURN = {"medium": "web_chat", "text": "One more thing"}
REGISTERED = frozenset({200, 409})
"""Registering an identifier: 409 once another caller (the matrix's other customer) has it."""

RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/v1/me/session"): Rule(CUSTOMER),
    ("GET", "/v1/me/cart"): Rule(CUSTOMER, newcomer=frozenset({404})),
    ("POST", "/v1/me/cart/items"): Rule(
        CUSTOMER, body={"sku": "MATRIX-2", "name": "Tea", "unit_price": "4.20", "quantity": 1}
    ),
    ("PATCH", "/v1/me/cart/items/{sku:str}"): Rule(
        CUSTOMER, newcomer=frozenset({404}), params={"sku": SEEDED_SKU}, body={"quantity": 2}
    ),
    ("DELETE", "/v1/me/cart/items/{sku:str}"): Rule(
        CUSTOMER, newcomer=frozenset({404}), params={"sku": SEEDED_SKU}
    ),
    ("POST", "/v1/me/cart/checkout"): Rule(CUSTOMER, newcomer=frozenset({404})),
    ("POST", "/v1/me/sync"): Rule(
        CUSTOMER,
        body={
            "actions": [
                {
                    "event_id": "5f0e8a34-7c2b-4d19-9e61-3a8b2c4d5e6f",
                    "target": "cart",
                    "base_version": 0,
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "operation": {"op": "remove_item", "sku": SEEDED_SKU},
                }
            ]
        },
    ),
    ("GET", "/v1/me/applications"): Rule(CUSTOMER),
    ("POST", "/v1/me/applications"): Rule(
        CUSTOMER, ok=frozenset({201}), body={"form_type": "bank-account"}
    ),
    ("GET", f"{APPLICATION}"): Rule(CUSTOMER, newcomer=frozenset({404})),
    ("PATCH", f"{APPLICATION}/steps/{{step:str}}/draft"): Rule(
        CUSTOMER,
        newcomer=frozenset({404}),
        params={"step": "identity"},
        body={"values": {"first_name": "Ada"}},
    ),
    ("POST", f"{APPLICATION}/steps/{{step:str}}/complete"): Rule(
        CUSTOMER,
        ok=frozenset({422}),
        newcomer=frozenset({404}),
        params={"step": "identity"},
        body={"values": {"first_name": "Ada"}},
    ),
    ("POST", f"{APPLICATION}/back"): Rule(
        CUSTOMER, ok=frozenset({409}), newcomer=frozenset({404}), body={"step": "identity"}
    ),
    ("POST", f"{APPLICATION}/submit"): Rule(
        CUSTOMER, ok=frozenset({422}), newcomer=frozenset({404})
    ),
    ("POST", f"{APPLICATION}/withdraw"): Rule(CUSTOMER, newcomer=frozenset({404})),
    ("GET", "/v1/agent/customers/{customer_id:uuid}/session"): Rule(AGENT, headers=PURPOSE),
    ("GET", "/v1/agent/applications/{application_id:uuid}"): Rule(AGENT, headers=PURPOSE),
    ("GET", "/v1/agent/applications"): Rule(AGENT),
    ("GET", "/v1/me/conversations"): Rule(CUSTOMER),
    ("POST", "/v1/me/conversations"): Rule(
        CUSTOMER, ok=frozenset({201}), body={"medium": "app_chat", "text": "Hello"}
    ),
    ("GET", CONVERSATION): Rule(CUSTOMER, newcomer=frozenset({404})),
    ("POST", f"{CONVERSATION}/turns"): Rule(CUSTOMER, newcomer=frozenset({404}), body=TURN),
    ("POST", f"{CONVERSATION}/handoff"): Rule(
        CUSTOMER, newcomer=frozenset({404}), body={"reason": "a human, please"}
    ),
    ("POST", f"{CONVERSATION}/resolve"): Rule(CUSTOMER, newcomer=frozenset({404})),
    ("POST", f"{CONVERSATION}/rating"): Rule(
        CUSTOMER, ok=frozenset({409}), newcomer=frozenset({404}), body={"rating": 4}
    ),
    ("POST", f"{CONVERSATION}/reopen"): Rule(
        CUSTOMER, ok=frozenset({409}), newcomer=frozenset({404})
    ),
    ("POST", "/v1/me/identifiers"): Rule(
        CUSTOMER, ok=REGISTERED, body={"kind": "email", "value": "matrix@example.org"}
    ),
    ("GET", "/v1/agent/conversations"): Rule(AGENT),
    ("GET", AGENT_CONVERSATION): Rule(AGENT, headers=PURPOSE),
    ("POST", f"{AGENT_CONVERSATION}/accept"): Rule(AGENT, ok=frozenset({409})),
    ("POST", f"{AGENT_CONVERSATION}/turns"): Rule(AGENT, ok=frozenset({409}), body=TURN),
    ("POST", f"{AGENT_CONVERSATION}/transfer"): Rule(
        AGENT, ok=frozenset({409}), body={"to_agent": str(uuid4())}
    ),
    ("POST", f"{AGENT_CONVERSATION}/resolve"): Rule(AGENT),
    ("POST", "/v1/agent/customers/{customer_id:uuid}/identifiers"): Rule(
        AGENT, ok=REGISTERED, headers=PURPOSE, body={"kind": "phone", "value": "+15550100000"}
    ),
    ("GET", BOT_CONVERSATION): Rule(SERVICE),
    ("POST", f"{BOT_CONVERSATION}/turns"): Rule(SERVICE, body=TURN),
    ("POST", f"{BOT_CONVERSATION}/handoff"): Rule(SERVICE, body={"reason": "needs a human"}),
    ("POST", "/v1/service/inbound"): Rule(
        SERVICE, body={"channel": "sms", "sender": "+15550100001", "text": "Hello"}
    ),
    ("GET", "/v1/agent/customers/{customer_id:uuid}/timeline"): Rule(AGENT, headers=PURPOSE),
    ("GET", "/v1/me/timeline"): Rule(CUSTOMER),
    ("POST", "/v1/me/activity"): Rule(
        CUSTOMER, body={"items": [{"type": "viewed", "sku": "MATRIX-3", "name": "Cup"}]}
    ),
    ("GET", "/v1/me/preferences"): Rule(CUSTOMER),
    ("PUT", "/v1/me/preferences"): Rule(CUSTOMER, body={"personalization": True}),
    ("GET", "/v1/me/consents"): Rule(CUSTOMER),
    ("PUT", "/v1/me/consents"): Rule(
        CUSTOMER, body={"consents": {"marketing": True}, "policy_version": "2026-01"}
    ),
    ("GET", "/v1/me/consents/{purpose:str}"): Rule(CUSTOMER, params={"purpose": "marketing"}),
    ("PUT", "/v1/me/consents/{purpose:str}"): Rule(
        CUSTOMER, params={"purpose": "analytics"}, body=CHOICE
    ),
    ("GET", "/v1/privacy/subjects/{subject_id:uuid}/consents"): Rule(
        COMPLIANCE, params={"subject_id": str(uuid4())}
    ),
    ("GET", "/v1/analytics/daily"): Rule(AGENT),
    ("GET", "/v1/analytics/journeys"): Rule(AGENT),
    ("GET", "/v1/analytics/funnels"): Rule(AGENT),
    ("GET", "/v1/analytics/conversations"): Rule(AGENT),
    ("GET", "/v1/me/session/events"): Rule(CUSTOMER, stream=True),
    ("GET", "/v1/agent/conversations/events"): Rule(AGENT, stream=True),
    ("GET", "/v1/agent/customers/{customer_id:uuid}/events"): Rule(
        AGENT, headers=PURPOSE, stream=True
    ),
    ("POST", "/v1/sessions"): Rule(
        PUBLIC, ok=frozenset({201}), body={"device_name": "Matrix phone"}
    ),
    ("POST", "/v1/sessions/redeem"): Rule(
        PUBLIC, ok=frozenset({422}), body={"code": "ZZZZZ-ZZZZZ", "device_name": "Matrix"}
    ),
    ("POST", "/v1/me/handoff"): Rule(CUSTOMER, ok=frozenset({201})),
    ("GET", "/v1/me/devices"): Rule(CUSTOMER),
    ("DELETE", "/v1/me/devices/{device_id:uuid}"): Rule(
        CUSTOMER, ok=frozenset({404}), params={"device_id": str(uuid4())}
    ),
    ("POST", "/v1/me/link"): Rule(CUSTOMER, ok=frozenset({422}), body={"token": "not-a-jwt"}),
    ("GET", "/v1/privacy/subjects/{subject_id:uuid}/export"): Rule(COMPLIANCE, headers=PURPOSE),
    ("GET", "/v1/me/export"): Rule(CUSTOMER),
    ("GET", "/v1/privacy/audit"): Rule(COMPLIANCE),
    ("GET", "/.well-known/continuity-signing-key"): Rule(PUBLIC),
    ("POST", "/v1/privacy/erasures"): Rule(COMPLIANCE, ok=frozenset({404}), body=NOBODY),
    ("GET", "/v1/privacy/erasures"): Rule(COMPLIANCE),
    ("GET", "/v1/privacy/erasures/{request_id:uuid}"): Rule(
        COMPLIANCE, ok=frozenset({404}), params={"request_id": str(uuid4())}
    ),
    ("GET", "/v1/privacy/erasures/{request_id:uuid}/certificate"): Rule(
        COMPLIANCE, ok=frozenset({404}), params={"request_id": str(uuid4())}
    ),
    ("GET", HOLD): Rule(COMPLIANCE, ok=frozenset({404}), params={"subject_id": str(uuid4())}),
    ("PUT", HOLD): Rule(
        COMPLIANCE, ok=frozenset({404}), params={"subject_id": str(uuid4())}, body={"reason": "x"}
    ),
    ("DELETE", HOLD): Rule(COMPLIANCE, ok=frozenset({404}), params={"subject_id": str(uuid4())}),
    ("DELETE", "/v1/privacy/suppressions"): Rule(COMPLIANCE, ok=frozenset({404}), body=NOBODY),
    ("POST", "/v1/me/erasure"): Rule(CUSTOMER, ok=frozenset({202})),
    ("GET", "/health"): Rule(PUBLIC),
    ("GET", "/ready"): Rule(PUBLIC),
    ("GET", "/metrics"): Rule(PUBLIC),
    ("GET", "/schema"): Rule(PUBLIC),
    ("GET", "/schema/swagger"): Rule(PUBLIC),
    ("GET", "/schema/openapi.json"): Rule(PUBLIC),
    ("GET", "/schema/oauth2-redirect.html"): Rule(PUBLIC),
    ("GET", "/schema/{path:str}"): Rule(
        PUBLIC, ok=frozenset({404}), params={"path": "no-such-renderer"}
    ),
    ("GET", "/schema/assets/{name:str}"): Rule(PUBLIC, params={"name": "swagger-ui.css"}),
}


def _is_generated_options(handler: HTTPRouteHandler) -> bool:
    """Litestar's own `OPTIONS` handler, which it adds to every path without one."""
    qualname = getattr(handler.fn, "__qualname__", "")
    return qualname.startswith("HTTPRoute.create_options_handler.")


def route_table(app: Litestar) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves but the console's. A websocket
    or mounted ASGI route is listed under its kind, so it too needs a rule (none is allowed
    today)."""
    table: set[tuple[str, str]] = set()
    for route in app.routes:
        if in_console(route.path):
            continue  # cookie sessions, not bearer tokens: tests/api/test_console.py's matrix
        if not isinstance(route, HTTPRoute):
            table.add((type(route).__name__, route.path))
            continue
        for handler in route.route_handlers:
            if _is_generated_options(handler):
                continue
            table.update((method, route.path) for method in handler.http_methods)
    return table


def missing_rules(app: Litestar, rules: Mapping[tuple[str, str], Rule] = RULES) -> list[str]:
    """The app's routes that have no rule, as `METHOD /path` lines."""
    return sorted(f"{method} {path}" for method, path in route_table(app) - rules.keys())


def _app_without_database() -> Litestar:
    """The real app, built but not started: enough to read its route table."""
    settings = Settings(jwt_secret=SECRET)
    return create_app(settings, database_url="postgresql://unused.invalid/none")


def test_every_route_has_a_rule() -> None:
    missing = missing_rules(_app_without_database())
    assert not missing, (
        "routes without an authorization rule (add each to RULES in"
        " tests/api/test_authorization_matrix.py, saying who may call it):\n  "
        + "\n  ".join(missing)
    )


def test_every_rule_names_a_route() -> None:
    stale = sorted(RULES.keys() - route_table(_app_without_database()))
    assert not stale, f"rules for routes the app no longer serves: {stale}"


def test_a_new_route_without_a_rule_is_reported() -> None:
    """The check above is not vacuous: a route registered on a fresh app is named."""

    @get("/v1/me/matrix-dummy", sync_to_thread=False)
    def dummy() -> str:
        return "dummy"

    app = _app_without_database()
    assert missing_rules(app) == []
    app.register(dummy)
    assert missing_rules(app) == ["GET /v1/me/matrix-dummy"]


def path_of(template: str, params: Mapping[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in params, f"the rule for {template} gives no value for {{{name}}}"
        return params[name]

    return re.sub(r"\{(\w+)(?::\w+)?\}", fill, template)


@dataclass(frozen=True)
class Caller:
    """A kind of caller: the headers it sends, and the role it authenticates as (None: it does
    not authenticate)."""

    name: str
    headers: Callable[[UUID], dict[str, str]]
    role: Role | None = None
    expired: bool = False


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(
    role: Role,
    secret: str = SECRET,
    ttl: timedelta = timedelta(hours=1),
    audience: str = "continuity",
) -> Callable[[UUID], dict[str, str]]:
    device = "phone" if role == "customer" else None
    return lambda subject: _bearer(issue_token(secret, subject, role, device, ttl, audience))


def _expired(subject: UUID) -> dict[str, str]:
    """A customer token that was valid until a minute ago (`issue_token` mints none such)."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(subject),
        "iss": "continuity",
        "aud": "continuity",
        "iat": now - timedelta(hours=1),
        "exp": now - timedelta(minutes=1),
        "role": "customer",
        "device": "phone",
    }
    return _bearer(jwt.encode(claims, SECRET, algorithm="HS256"))


CALLERS: list[Caller] = [
    Caller("no token", lambda _: {}),
    Caller("expired", _expired, expired=True),
    Caller("wrong signature", _token("customer", secret="another-secret-" + "y" * 40)),
    Caller("wrong audience", _token("customer", audience="another-api")),
    Caller("agent", _token("agent"), role="agent"),
    Caller("service", _token("service"), role="service"),
    Caller("compliance", _token("compliance"), role="compliance"),
    Caller("another customer", lambda _: _token("customer")(uuid4()), role="customer"),
    # Last: the first customer's own request may change the cart the others are checked against.
    Caller("customer", _token("customer"), role="customer"),
]


@pytest.fixture
async def matrix_app(started: AppFactory) -> AsyncIterator[Litestar]:
    async with started() as app:
        yield app


async def _seed(client: httpx.AsyncClient, customer: UUID) -> httpx.Response:
    """The first customer's cart, with one item; the answer is their cart as they read it."""
    added = await client.post(
        "/v1/me/cart/items",
        headers=_token("customer")(customer),
        json={"sku": SEEDED_SKU, "name": SEEDED_NAME, "unit_price": "12.50", "quantity": 1},
    )
    assert added.status_code == 200, added.text
    started = await client.post(
        "/v1/me/applications",
        headers={**_token("customer")(customer), "Idempotency-Key": str(SEEDED_START)},
        json={"form_type": "personal-loan"},
    )
    assert started.status_code == 201, started.text
    opened = await client.post(
        "/v1/me/conversations",
        headers={**_token("customer")(customer), "Idempotency-Key": str(SEEDED_OPEN)},
        json={"medium": "web_chat", "text": "Where is my order?"},
    )
    assert opened.status_code == 201, opened.text
    return await _cart_of(client, customer)


async def _cart_of(client: httpx.AsyncClient, customer: UUID) -> httpx.Response:
    return await client.get("/v1/me/cart", headers=_token("customer")(customer))


def _check(
    route: str, rule: Rule, caller: Caller, response: httpx.Response, customer: UUID
) -> None:
    said = f"{route} as {caller.name}: {response.status_code} {response.text[:300]}"
    if rule.public:
        assert response.status_code in rule.ok, said
        return
    if caller.role is None:
        assert response.status_code == 401, said
        assert response.headers["content-type"].startswith("application/problem+json"), said
        challenge = response.headers.get("www-authenticate", "")
        assert challenge.startswith("Bearer "), said
        if caller.name != "no token":
            assert 'error="invalid_token"' in challenge, said
        if caller.expired:
            assert response.json()["token_expired"] is True, said
        return
    if caller.role not in rule.roles:
        assert response.status_code == 403, said
        assert response.headers["content-type"].startswith("application/problem+json"), said
        assert response.json()["status"] == 403, said
        return
    assert response.status_code not in (401, 403), said
    if caller.name == "another customer":
        assert response.status_code in (rule.newcomer or rule.ok), said
        assert str(customer) not in response.text, said
        assert SEEDED_NAME not in response.text, said
        return
    assert response.status_code in rule.ok, said


@pytest.mark.parametrize(
    ("method", "template"), sorted(RULES), ids=[f"{m} {t}" for m, t in sorted(RULES)]
)
async def test_route_answers_each_kind_of_caller(
    matrix_app: Litestar, method: str, template: str
) -> None:
    rule = RULES[(method, template)]
    customer = uuid4()
    seeded = {
        "application_id": str(Application.create_id(customer, SEEDED_START)),
        "conversation_id": str(Conversation.open_id(customer, SEEDED_OPEN)),
        "customer_id": str(customer),
        "subject_id": str(customer),
    }
    path = path_of(template, {**seeded, **rule.params})
    if rule.stream:
        matrix_app.state.runtime.live.stop()
    async with client_of(matrix_app) as client:
        before = await _seed(client, customer)
        for caller in CALLERS:
            if caller.name == "customer":
                # Nobody before the customer's own request may have changed their cart.
                now = await _cart_of(client, customer)
                assert (now.status_code, now.json()) == (before.status_code, before.json()), (
                    f"{method} {template}: another caller changed the first customer's cart"
                )
            response = await client.request(
                method, path, headers={**caller.headers(customer), **rule.headers}, json=rule.body
            )
            _check(f"{method} {template}", rule, caller, response, customer)


async def test_another_customer_reads_their_own_empty_state(matrix_app: Litestar) -> None:
    first, second = uuid4(), uuid4()
    async with client_of(matrix_app) as client:
        await _seed(client, first)
        theirs = _token("customer")(second)
        session = await client.get("/v1/me/session", headers=theirs)
        assert session.status_code == 200, session.text
        assert session.json()["subject_id"] == str(second)
        assert session.json()["cart"] is None
        cart = await client.get("/v1/me/cart", headers=theirs)
        assert cart.status_code == 404, cart.text
        item = f"/v1/me/cart/items/{SEEDED_SKU}"
        changed = await client.patch(item, headers=theirs, json={"quantity": 5})
        assert changed.status_code == 404, changed.text
        removed = await client.delete(item, headers=theirs)
        assert removed.status_code == 404, removed.text
        checked_out = await client.post("/v1/me/cart/checkout", headers=theirs)
        assert checked_out.status_code == 404, checked_out.text
        mine = await _cart_of(client, first)
        assert mine.status_code == 200
        assert [item["quantity"] for item in mine.json()["items"]] == [1]


async def test_options_needs_no_token_anywhere(matrix_app: Litestar) -> None:
    """Litestar's generated `OPTIONS` handler, on every path: 204 with `Allow`, no token."""
    paths = {template for _, template in RULES}
    params = {name: value for rule in RULES.values() for name, value in rule.params.items()}
    params["application_id"] = params["customer_id"] = params["conversation_id"] = str(uuid4())
    params["subject_id"] = str(uuid4())
    async with client_of(matrix_app) as client:
        for template in sorted(paths):
            response = await client.options(path_of(template, params))
            assert response.status_code == 204, f"OPTIONS {template}: {response.status_code}"
            assert "allow" in response.headers, f"OPTIONS {template}: no Allow"
