"""A TCP proxy in front of a gateway that loses the first answer: the first connection's
request is delivered and fully answered upstream, then the client's connection is closed
without that answer — the network failure an idempotent retry exists for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 message with a Content-Length body (what httpx sends and uvicorn answers)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + (await reader.readexactly(length) if length else b"")


class DropFirstAnswerProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.connections = 0
        self.dropped_answers: list[bytes] = []
        self.base_url = ""
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        first = self.connections == 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            if first:
                up_writer.write(await _read_message(reader))
                await up_writer.drain()
                self.dropped_answers.append(await _read_message(up_reader))
                return  # close both sides: the client never sees the answer
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for stream in (writer, up_writer):
                stream.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


@contextlib.asynccontextmanager
async def drop_first_answer(host: str, port: int) -> AsyncIterator[DropFirstAnswerProxy]:
    proxy = DropFirstAnswerProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
