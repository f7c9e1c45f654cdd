"""A TCP proxy in front of the real PostgreSQL that can silence one backend's connection.

A frozen connection stops carrying bytes either way, yet neither side sees it close: what a
dropped NAT entry or a dead network path looks like from the client. Connections are told
apart by the backend pid the server announces at startup (BackendKeyData), so connect through
it with `ssl=False`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def upstream_of(database_url: str) -> Callable[[], Awaitable[Streams]]:
    """How to reach the server of `database_url`, over TCP or its Unix socket."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = parts.port or int(query.get("port", ["5432"])[0])
    if host.startswith("/"):
        path = f"{host}/.s.PGSQL.{port}"
        return lambda: asyncio.open_unix_connection(path)
    return lambda: asyncio.open_connection(host, port)


def _backend_pid(startup: bytes) -> int | None:
    """The pid in a BackendKeyData message among the server's first messages, once complete."""
    at = 0
    while at + 5 <= len(startup):
        length = int.from_bytes(startup[at + 1 : at + 5], "big")
        if startup[at] == ord("K") and at + 9 <= len(startup):
            return int.from_bytes(startup[at + 5 : at + 9], "big")
        at += 1 + length
    return None


class _Carried:
    def __init__(self, writers: list[asyncio.StreamWriter]) -> None:
        self.writers = writers
        self.pipes: list[asyncio.Task[None]] = []
        self.pid: int | None = None


class FreezingProxy:
    def __init__(self, upstream: Callable[[], Awaitable[Streams]]) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._carried: list[_Carried] = []

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for carried in self._carried:
            for pipe in carried.pipes:
                pipe.cancel()
            for writer in carried.writers:
                writer.close()
        await asyncio.gather(*(p for c in self._carried for p in c.pipes), return_exceptions=True)
        await self._server.wait_closed()

    def freeze(self, pid: int) -> None:
        """Stop carrying bytes for backend `pid`, leaving both sockets open."""
        [carried] = [c for c in self._carried if c.pid == pid]
        for pipe in carried.pipes:
            pipe.cancel()

    async def _carry(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await self.upstream()
        carried = _Carried([client_out, server_out])
        self._carried.append(carried)
        carried.pipes = [
            asyncio.create_task(self._pipe(client_in, server_out, None)),
            asyncio.create_task(self._pipe(server_in, client_out, carried)),
        ]

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, startup_of: _Carried | None
    ) -> None:
        seen = b""
        try:
            while data := await source.read(65536):
                if startup_of is not None and startup_of.pid is None:
                    seen += data
                    startup_of.pid = _backend_pid(seen)
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        sink.close()
