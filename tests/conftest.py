"""Shared fixtures: a real PostgreSQL, a fresh schema per test, and the parts wired on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from litestar import Litestar

from api.app import create_app
from api.auth import Role, issue_token
from continuity.db import close_pool, create_pool, migrate
from continuity.mapper import EventMapper
from continuity.runtime import Runtime
from continuity.settings import Settings
from continuity.store import EventStore
from privacy.master_key import Keyring, MasterKey
from privacy.vault import KeyVault
from tests.database import test_database_url
from tests.helpers import SECRET, TokenFactory


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with test_database_url() as url:
        yield url


@pytest.fixture
async def schema(database_url: str) -> AsyncIterator[str]:
    name = f"test_{uuid4().hex[:16]}"
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, name)
    finally:
        await conn.close()
    yield name
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def pool(database_url: str, schema: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, schema, min_size=1, max_size=20)
    yield pool
    await close_pool(pool)


@pytest.fixture
async def store(pool: asyncpg.Pool, schema: str) -> AsyncIterator[EventStore]:
    store = EventStore(pool, schema)
    yield store
    await store.aclose()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([MasterKey.generate()])


@pytest.fixture
async def vault(pool: asyncpg.Pool, schema: str, keyring: Keyring) -> AsyncIterator[KeyVault]:
    vault = KeyVault(pool, schema, keyring)
    await vault.start()
    yield vault
    await vault.close()


@pytest.fixture
def mapper(vault: KeyVault) -> EventMapper:
    return EventMapper(vault)


AppFactory = Callable[..., AbstractAsyncContextManager[Litestar]]
"""started(**settings) -> an async context with the real app, started, built with those
settings on the test's schema."""
ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
"""serve(**settings) -> an async context with a client of such an app."""


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of a test's app: the erasure journal's file goes there, not into
    the checkout's `.continuity/`."""
    return tmp_path_factory.mktemp("continuity-data")


@pytest.fixture
def started(database_url: str, schema: str, keyring: Keyring, data_dir: Path) -> AppFactory:
    """The real app with some settings changed (CORS, rate limits, proxies...).

    Without the console unless asked (`console=True`): its routes cost each app about 40 ms to
    register, some 35 s over the suite. `tests/api/test_console.py` asks, and the browser
    tests' server serves it as `continuity run` does; the rest of the console's plumbing (its
    cookie in the auth middleware, its error pages) is in every app either way."""

    @asynccontextmanager
    async def start(**changes: object) -> AsyncIterator[Litestar]:
        changes.setdefault("data_dir", data_dir)
        changes.setdefault("console", False)
        settings = Settings(database_schema=schema, jwt_secret=SECRET, **changes)  # type: ignore[arg-type]
        app = create_app(settings, database_url=database_url, keyring=keyring)
        async with app.lifespan():
            yield app

    return start


@pytest.fixture
def serve(started: AppFactory) -> ClientFactory:
    """`async with serve(cors_origins=(...,)) as client: ...`"""

    @asynccontextmanager
    async def client(**changes: object) -> AsyncIterator[httpx.AsyncClient]:
        async with started(**changes) as app, client_of(app) as client:
            yield client

    return client


def client_of(app: Litestar, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client of `app` whose requests come from `peer` (the socket's address)."""
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://continuity.test")


@pytest.fixture
async def app(
    database_url: str, schema: str, keyring: Keyring, data_dir: Path
) -> AsyncIterator[Litestar]:
    """The real app, without the console (as `started`)."""
    settings = Settings(database_schema=schema, jwt_secret=SECRET, data_dir=data_dir, console=False)
    app = create_app(settings, database_url=database_url, keyring=keyring)
    async with app.lifespan():
        yield app


@pytest.fixture
def runtime(app: Litestar) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as client:
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
