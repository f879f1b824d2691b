"""A TCP proxy the fault tests put between the gateway and a service, to fail that service from outside.

The gateway connects to ``127.0.0.1:<proxy.port>``; the proxy forwards to the real service. The test then
makes the service look restarted, unreachable or stalled without touching it (the machine's PostgreSQL
and Redis are shared with other test runs, so they are never stopped):

- :meth:`drop` aborts every open connection (queries in flight and pooled connections die, as when the
  server is killed); new connections are still accepted;
- :meth:`refuse` stops listening (connects are refused, as when nothing runs on the port) and drops;
  :meth:`accept` listens again on the same port;
- :meth:`stall` keeps every connection open but forwards nothing (a hung server, a SIGSTOPped process,
  a black-holed network): new connections are accepted and stall too; :meth:`resume` lets the held
  bytes through;
- ``delay`` (seconds) slows every forwarded chunk (a slow link);
- :meth:`cut_after` waits for given bytes from a client (say a ``COMMIT``), lets them reach the
  service, then cuts before the service's answer gets back: the client can't know whether its
  statement took effect (a server killed at that moment).

It runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or _free_port()
        self.delay = 0.0
        self.connections_seen = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._cut_marker: bytes | None = None
        self._cut_down_for = 0.0
        self.cut_done = asyncio.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        await self.accept()
        return self

    async def accept(self) -> None:
        """Listen (again) on the proxy's port."""
        if self._server is None:
            for _ in range(50):  # the port of a just-closed listener can take a moment to free
                try:
                    self._server = await asyncio.start_server(
                        self._serve, "127.0.0.1", self.port, reuse_address=True
                    )
                    return
                except OSError:
                    await asyncio.sleep(0.1)
            raise RuntimeError(f"proxy could not listen on {self.port} again")

    async def refuse(self) -> None:
        """Stop listening and drop every connection: the service looks down."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop()

    def drop(self) -> None:
        """Abort every open connection, both sides (a killed server; a reset network)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def stall(self) -> None:
        """Forward nothing until :meth:`resume`; connections stay open."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut_after(self, marker: bytes, *, down_for: float) -> None:
        """On the next client chunk holding ``marker``: forward it, hold every answer, then (0.5 s
        later, the service has acted on it) drop and refuse everything for ``down_for`` seconds."""
        self._cut_marker = marker
        self._cut_down_for = down_for
        self.cut_done.clear()

    async def _cut(self) -> None:
        await asyncio.sleep(0.5)
        await self.refuse()
        self.resume()
        await asyncio.sleep(self._cut_down_for)
        await self.accept()
        self.cut_done.set()

    async def close(self) -> None:
        """Stop listening and end every connection (their tasks end by themselves; a straggler is
        cancelled after a moment)."""
        self._cut_marker = None
        await self.refuse()
        self.resume()
        pending = [task for task in self._tasks if task is not asyncio.current_task()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=2)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(BaseException):
                    await task

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections_seen += 1
        self._writers.add(client_writer)
        try:
            await self._flowing.wait()
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            except OSError:
                client_writer.transport.abort()
                return
            if client_writer not in self._writers:  # dropped while connecting
                upstream_writer.transport.abort()
                return
            self._writers.add(upstream_writer)
            await asyncio.gather(
                self._pump(client_reader, upstream_writer, client_writer, from_client=True),
                self._pump(upstream_reader, client_writer, upstream_writer, from_client=False),
            )
        finally:
            self._writers.discard(client_writer)
            if task is not None:
                self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        *,
        from_client: bool,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, RuntimeError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                if writer.transport.is_closing():
                    break
                writer.write(data)
                if from_client and self._cut_marker is not None and self._cut_marker in data:
                    self._cut_marker = None
                    self.stall()  # the service's answer stays here
                    cut = asyncio.create_task(self._cut())
                    self._tasks.add(cut)
                    cut.add_done_callback(self._tasks.discard)
                await writer.drain()
        writer.transport.abort()
        other.transport.abort()
        self._writers.discard(writer)
