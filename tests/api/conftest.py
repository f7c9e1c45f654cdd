"""An app on the test schema, driven in-process over ASGI on the test's own event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from uuid import UUID

import httpx
import pytest
from litestar import Litestar

from api.app import create_app
from api.auth import Role, issue_token
from continuity.runtime import Runtime
from continuity.settings import Settings
from privacy.master_key import Keyring

SECRET = "test-secret-" + "x" * 40

TokenFactory = Callable[..., dict[str, str]]


@pytest.fixture
async def app(database_url: str, schema: str, keyring: Keyring) -> AsyncIterator[Litestar]:
    settings = Settings(database_schema=schema, jwt_secret=SECRET)
    app = create_app(settings, database_url=database_url, keyring=keyring)
    async with app.lifespan():
        yield app


@pytest.fixture
def runtime(app: Litestar) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://continuity.test") as client:
        yield client


@pytest.fixture
def auth() -> TokenFactory:
    """Headers with a bearer token: auth(customer_id, device="phone", role="customer")."""

    def headers(
        subject: UUID, device: str | None = "phone", role: Role = "customer"
    ) -> dict[str, str]:
        token = issue_token(SECRET, subject, role, device, timedelta(hours=1))
        return {"Authorization": f"Bearer {token}"}

    return headers
