"""One customer's journey through the API, for the console's tests (in-process and in a
browser): a kettle in the cart on the laptop, a loan application half done on the phone, a chat
the bot hands to a human. Everything goes through the HTTP API, as the customer's apps would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID, uuid4

import httpx

from tests.api.test_applications import IDENTITY
from tests.api.test_applications import SURNAME as SURNAME

KETTLE_NAME = "Copper kettle"
KETTLE = {"sku": "KETTLE-7", "name": KETTLE_NAME, "unit_price": "49.00", "quantity": 1}
QUESTION = "Can someone look at my loan application? It asks for my employer twice."
REASON = "customer asks for a person"

Headers = Callable[[UUID, str | None, str], dict[str, str]]
"""Bearer headers for (subject, device, role)."""


@dataclass(frozen=True)
class Journey:
    customer: UUID
    application: UUID
    conversation: UUID
    laptop: dict[str, str]
    phone: dict[str, str]
    email: str
    """The address registered to the customer: each journey's own."""


async def journey(
    client: httpx.AsyncClient, headers: Headers, *, analytics: bool = False
) -> Journey:
    """With `analytics`, the customer consents to analytics first, so the journey is counted."""
    customer = uuid4()
    email = f"ada.{customer.hex[:10]}@example.com"
    laptop = {**headers(customer, "laptop", "customer"), "X-Channel": "web"}
    phone = {**headers(customer, "phone", "customer"), "X-Channel": "app"}
    bot = headers(uuid4(), None, "service")

    async def ok(answer: httpx.Response) -> httpx.Response:
        assert answer.status_code < 300, answer.text
        return answer

    if analytics:
        given = {"given": True, "policy_version": "2026-01"}
        await ok(await client.put("/v1/me/consents/analytics", json=given, headers=laptop))
    await ok(await client.post("/v1/me/cart/items", json=KETTLE, headers=laptop))
    started = await ok(
        await client.post("/v1/me/applications", json={"form_type": "personal-loan"}, headers=phone)
    )
    application = UUID(started.json()["application_id"])
    await ok(
        await client.post(
            f"/v1/me/applications/{application}/steps/identity/complete",
            json={"values": IDENTITY},
            headers=phone,
        )
    )
    await ok(
        await client.post(
            "/v1/me/identifiers", json={"kind": "email", "value": email}, headers=laptop
        )
    )
    opened = await ok(
        await client.post(
            "/v1/me/conversations", json={"medium": "web_chat", "text": QUESTION}, headers=laptop
        )
    )
    conversation = UUID(opened.json()["conversation_id"])
    await ok(
        await client.post(
            f"/v1/service/conversations/{conversation}/handoff",
            json={"reason": REASON},
            headers=bot,
        )
    )
    return Journey(customer, application, conversation, laptop, phone, email)
