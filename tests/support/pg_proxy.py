"""A TCP proxy in front of PostgreSQL that a test can cut: database outages without restarting the server.

Workers connect through it (``proxy.url(database_url)`` swaps in the proxy's port)::

    proxy.blip()           # every open connection is closed once; new ones work at once
    proxy.outage(15)       # every open connection is closed, and new ones are closed on arrival for 15 s

The shared PostgreSQL at 127.0.0.1:5432 keeps running for every other test. The proxy runs an asyncio
loop in a thread of the test process; a closed connection looks to the client exactly like a server
restart ("server closed the connection unexpectedly").
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

CHUNK = 64 * 1024


class PgProxy:
    def __init__(self, *, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self._target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refuse_until = 0.0  # time.monotonic(): until then, connections are closed on arrival
        self.connections = 0
        self.refused = 0

    def start(self) -> PgProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close_all(stop_listening=True), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def url(self, database_url: str) -> str:
        """``database_url`` with host and port pointing at the proxy."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def blip(self) -> None:
        """Close every open connection once (a PostgreSQL restart that is over at once)."""
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(timeout=10)

    def outage(self, seconds: float) -> None:
        """Close every open connection and close new ones on arrival for ``seconds``; returns at once."""
        self._refuse_until = time.monotonic() + seconds
        self.blip()

    @property
    def in_outage(self) -> bool:
        return time.monotonic() < self._refuse_until

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_all(self, *, stop_listening: bool = False) -> None:
        if stop_listening and self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()  # a reset, not a polite close: what a dying server looks like
        self._open.clear()
        if stop_listening:
            tasks = [task for task in self._tasks if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.in_outage:
            self.refused += 1
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections += 1
        self._open.update((client_writer, upstream_writer))
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await asyncio.gather(self._pipe(client_reader, upstream_writer),
                                 self._pipe(upstream_reader, client_writer))
        except asyncio.CancelledError:
            pass  # the proxy stops; ending quietly keeps asyncio's stream callback from logging it
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            for writer in (client_writer, upstream_writer):
                self._open.discard(writer)
                writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        # One side ended: end the other too, so neither the client nor PostgreSQL waits on a half-open line.
        writer.transport.abort()


@pytest.fixture
def pg_proxy() -> Iterator[PgProxy]:
    proxy = PgProxy().start()
    try:
        yield proxy
    finally:
        proxy.stop()
