"""Tokens from an external identity provider, beside Continuity's own: its keys from a real JWKS
endpoint or one PEM public key; RS256, ES256 and EdDSA; and every way such a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4, uuid5

import httpx
import pytest

from api.auth import EXTERNAL_SUBJECTS
from continuity.identity_provider import IdentityProvider
from continuity.settings import Settings
from privacy.master_key import Keyring
from tests.helpers import MUG, SECRET, TokenFactory, serve
from tests.idp import IDP_AUDIENCE, IDP_ISSUER, JwksServer, SigningKey, idp_claims

pytestmark = pytest.mark.anyio

ALGORITHMS = ["RS256", "ES256", "EdDSA"]


@pytest.fixture(scope="module")
def signing_keys() -> dict[str, SigningKey]:
    return {algorithm: SigningKey.generate(algorithm) for algorithm in ALGORITHMS}


@pytest.fixture
def jwks_server(signing_keys: dict[str, SigningKey]) -> Iterator[JwksServer]:
    with JwksServer(list(signing_keys.values())) as server:
        yield server


@pytest.fixture
async def idp_client(
    jwks_server: JwksServer, database_url: str, schema: str, keyring: Keyring
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with both issuers: its own (SECRET) and the IdP, keys from `jwks_server`."""
    idp = IdentityProvider(IDP_ISSUER, IDP_AUDIENCE, jwks_url=jwks_server.url)
    settings = Settings(database_schema=schema, jwt_secret=SECRET, idp=idp)
    async with serve(settings, database_url, keyring) as (_, client):
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def idp_subject(sub: str) -> UUID:
    return uuid5(EXTERNAL_SUBJECTS, f"{IDP_ISSUER}|{sub}")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_signed_hs256(claims: dict[str, Any], secret: bytes, kid: str | None = None) -> str:
    """HS256 by hand: PyJWT itself refuses to use a PEM public key as an HMAC secret, which is
    exactly the forgery an algorithm-confusion attack tries."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    body = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_idp_tokens_from_a_jwks_url_are_accepted(
    idp_client: httpx.AsyncClient, signing_keys: dict[str, SigningKey], algorithm: str
) -> None:
    sub = f"auth0|{uuid4().hex}"
    token = signing_keys[algorithm].sign(idp_claims(sub))
    added = await idp_client.post("/v1/me/cart/items", json=MUG, headers=bearer(token))
    assert added.status_code == 200, added.text
    session = await idp_client.get("/v1/me/session", headers=bearer(token))
    assert session.status_code == 200, session.text
    assert session.json()["subject_id"] == str(idp_subject(sub))
    assert session.json()["cart"]["items"][0]["sku"] == "MUG-1"


async def test_both_issuers_are_accepted_side_by_side(
    idp_client: httpx.AsyncClient, signing_keys: dict[str, SigningKey], auth: TokenFactory
) -> None:
    ours = await idp_client.get("/v1/me/session", headers=auth(uuid4()))
    theirs = await idp_client.get(
        "/v1/me/session", headers=bearer(signing_keys["RS256"].sign(idp_claims()))
    )
    assert (ours.status_code, theirs.status_code) == (200, 200)


async def test_an_idp_subject_cannot_name_one_of_ours(
    idp_client: httpx.AsyncClient, signing_keys: dict[str, SigningKey], auth: TokenFactory
) -> None:
    """An IdP token whose `sub` is a Continuity subject id gets its own, mapped id."""
    victim = uuid4()
    assert (await idp_client.post("/v1/me/cart/items", json=MUG, headers=auth(victim))).is_success
    token = signing_keys["ES256"].sign(idp_claims(str(victim)))
    session = await idp_client.get("/v1/me/session", headers=bearer(token))
    assert session.status_code == 200
    assert session.json()["subject_id"] == str(idp_subject(str(victim))) != str(victim)
    assert session.json()["cart"] is None
    assert (await idp_client.get("/v1/me/cart", headers=bearer(token))).status_code == 404


def jwt_none(claims: dict[str, Any]) -> str:
    body = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(body).encode())}."


def expired() -> dict[str, Any]:
    now = datetime.now(UTC)
    return idp_claims(iat=now - timedelta(hours=2), exp=now - timedelta(hours=1))


BAD_TOKENS: list[tuple[str, Callable[[SigningKey], str], str]] = [
    ("wrong aud", lambda k: k.sign(idp_claims(aud="another-api")), "Audience doesn't match"),
    ("no aud", lambda k: k.sign(idp_claims(aud=None)), 'missing the "aud" claim'),
    ("unknown iss", lambda k: k.sign(idp_claims(iss="https://evil.test")), "issuer (iss)"),
    ("no iss", lambda k: k.sign(idp_claims(iss=None)), "issuer (iss)"),
    ("our iss, IdP key", lambda k: k.sign(idp_claims(iss="continuity")), "alg value"),
    ("expired", lambda k: k.sign(expired()), "expired"),
    ("no exp", lambda k: k.sign(idp_claims(exp=None)), 'missing the "exp" claim'),
    ("no role", lambda k: k.sign(idp_claims(role=None)), "must carry a role"),
    ("unknown role", lambda k: k.sign(idp_claims(role="admin")), "must carry a role"),
    ("customer, no device", lambda k: k.sign(idp_claims(device=None)), "name its device"),
    ("no kid", lambda k: k.sign(idp_claims(), named=False), "must name its kid"),
    (
        "another key, known kid",
        lambda k: SigningKey.generate("ES256").sign(idp_claims(), kid=k.kid),
        "Signature verification failed",
    ),
    (
        "HS256 with our secret, IdP iss",
        lambda k: hand_signed_hs256(idp_claims(), SECRET.encode(), k.kid),
        "must be signed with RS256, ES256, EdDSA",
    ),
    (
        "HS256 with the IdP public key as secret",
        lambda k: hand_signed_hs256(idp_claims(), k.public_pem().encode(), k.kid),
        "must be signed with RS256, ES256, EdDSA",
    ),
    ("alg none", lambda k: jwt_none(idp_claims()), "must be signed with"),
]


@pytest.mark.parametrize(
    ("forge", "detail"), [b[1:] for b in BAD_TOKENS], ids=[b[0] for b in BAD_TOKENS]
)
async def test_bad_idp_tokens_are_401_problems(
    idp_client: httpx.AsyncClient,
    signing_keys: dict[str, SigningKey],
    forge: Callable[[SigningKey], str],
    detail: str,
) -> None:
    response = await idp_client.get("/v1/me/session", headers=bearer(forge(signing_keys["ES256"])))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert detail in response.json()["detail"]


async def test_random_kids_do_not_make_the_jwks_be_fetched_again(
    idp_client: httpx.AsyncClient, jwks_server: JwksServer, signing_keys: dict[str, SigningKey]
) -> None:
    """The keys are fetched once at startup; tokens naming made-up kids are refused without a
    fetch each (the refetch for an unknown kid waits out a minimum interval)."""
    assert jwks_server.requests == 1
    key = signing_keys["EdDSA"]
    for _ in range(25):
        forged = key.sign(idp_claims(), kid=uuid4().hex)
        response = await idp_client.get("/v1/me/session", headers=bearer(forged))
        assert response.status_code == 401
    assert jwks_server.requests == 1
    good = await idp_client.get("/v1/me/session", headers=bearer(key.sign(idp_claims())))
    assert good.status_code == 200
    assert jwks_server.requests == 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_idp_tokens_checked_with_a_configured_public_key(
    signing_keys: dict[str, SigningKey],
    database_url: str,
    schema: str,
    keyring: Keyring,
    algorithm: str,
) -> None:
    key = signing_keys[algorithm]
    idp = IdentityProvider(IDP_ISSUER, IDP_AUDIENCE, public_key=key.public_pem())
    settings = Settings(database_schema=schema, jwt_secret=SECRET, idp=idp)
    async with serve(settings, database_url, keyring) as (_, client):
        good = await client.get("/v1/me/session", headers=bearer(key.sign(idp_claims("u-7"))))
        assert good.status_code == 200, good.text
        assert good.json()["subject_id"] == str(idp_subject("u-7"))
        no_kid = key.sign(idp_claims(), named=False)
        assert (await client.get("/v1/me/session", headers=bearer(no_kid))).status_code == 200

        other_key = SigningKey.generate(algorithm).sign(idp_claims())
        other_alg = next(k for a, k in signing_keys.items() if a != algorithm).sign(idp_claims())
        wrong_aud = key.sign(idp_claims(aud="another-api"))
        wrong_iss = key.sign(idp_claims(iss="https://evil.test"))
        expired_token = key.sign(expired())
        confused = hand_signed_hs256(idp_claims(), key.public_pem().encode())
        for token in (other_key, other_alg, wrong_aud, wrong_iss, expired_token, confused):
            refused = await client.get("/v1/me/session", headers=bearer(token))
            assert refused.status_code == 401
            assert refused.headers["content-type"].startswith("application/problem+json")


async def test_an_agent_of_the_identity_provider_uses_the_agent_routes_only(
    idp_client: httpx.AsyncClient, signing_keys: dict[str, SigningKey], auth: TokenFactory
) -> None:
    """An IdP token with role `agent` is an agent: the agent routes serve it, the customer's
    do not."""
    customer = uuid4()
    seen = await idp_client.get("/v1/me/session", headers=auth(customer))
    assert seen.status_code == 200
    sub = f"okta|{uuid4().hex}"
    agent = bearer(signing_keys["ES256"].sign(idp_claims(sub, role="agent", device=None)))
    queue = await idp_client.get("/v1/agent/applications", headers=agent)
    assert queue.status_code == 200, queue.text
    session = await idp_client.get(
        f"/v1/agent/customers/{customer}/session", headers={**agent, "X-Purpose": "idp agent"}
    )
    assert session.status_code == 200, session.text
    assert (await idp_client.get("/v1/me/session", headers=agent)).status_code == 403


async def test_a_guest_signs_in_with_the_identity_providers_token(
    idp_client: httpx.AsyncClient, signing_keys: dict[str, SigningKey]
) -> None:
    """`POST /v1/me/link` takes the IdP's token for the customer: the guest's cart is theirs."""
    guest = await idp_client.post("/v1/sessions", json={"device_name": "Pixel 8"})
    phone = bearer(guest.json()["token"])
    assert (await idp_client.post("/v1/me/cart/items", json=MUG, headers=phone)).is_success
    sub = f"user-{uuid4().hex[:8]}"
    token = signing_keys["RS256"].sign(idp_claims(sub))
    linked = await idp_client.post("/v1/me/link", json={"token": token}, headers=phone)
    assert linked.status_code == 200, linked.text
    assert linked.json()["subject_id"] == str(idp_subject(sub))
    cart = (await idp_client.get("/v1/me/cart", headers=bearer(token))).json()
    assert [i["sku"] for i in cart["items"]] == [MUG["sku"]]
