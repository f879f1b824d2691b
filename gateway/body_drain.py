"""Early refusals reach the client: read and discard the unread request body before answering.

Guards (authentication, key state, rate limits) refuse a request before its handler reads the
body. If the server then answers and closes while megabytes of the upload are still unread, the
kernel resets the connection (RST), and an ordinary client that sends the whole body before it
reads the answer (urllib, requests, curl, Node's fetch) gets ``Connection reset by peer`` instead
of the 401/403/429/413 body. :class:`BodyDrain` wraps the ASGI app: when the response starts while
the request body has not been fully received, it first reads and discards the rest of the body,
then lets the response go out. The connection then ends cleanly (or is kept alive).

Bounds, so a refusal cannot be made to read forever: at most ``limit`` bytes are drained (the
gateway's ``TRYON_MAX_BODY_BYTES``: any body the gateway would accept is drained), and a request
that *declares* a ``Content-Length`` above ``limit`` is drained only if that length is within
``OVERSIZE_FACTOR`` times the limit (so a slightly too large upload still reads its 413); beyond that
the connection is closed unread, as before. A client that sent ``Expect: 100-continue`` and was
never asked for its body is not drained: it has not sent it (uvicorn sends ``100 Continue`` only
on the first ``receive``), and the answer reaches it directly.

Requests without a body (no ``Content-Length``, no ``Transfer-Encoding``) and requests whose
handler read the whole body pass through with one flag check per message.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

OVERSIZE_FACTOR = 2
"""A declared body up to this many times the limit is still drained, so its 413 is readable."""


def _declared_body(scope: Scope) -> tuple[bool, int | None, bool]:
    """(has a body, its declared length if any, the client waits for 100-continue)."""
    length: int | None = None
    chunked = False
    expects_continue = False
    for name, value in scope.get("headers", ()):
        lowered = name.lower()
        if lowered == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif lowered == b"transfer-encoding":
            chunked = True
        elif lowered == b"expect":
            expects_continue = value.lower() == b"100-continue"
    has_body = chunked or (length is not None and length > 0)
    return has_body, length, expects_continue


class BodyDrain:
    """ASGI middleware: drain an unread request body (bounded) before the response starts."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        has_body, declared, expects_continue = _declared_body(scope)
        if not has_body:
            await self.app(scope, receive, send)
            return
        complete = False
        asked = False

        async def tracking_receive() -> ReceiveMessage:
            nonlocal complete, asked
            asked = True
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True  # the last chunk, or http.disconnect: nothing more will come
            return message

        async def draining_send(message: Message) -> None:
            if not complete and message["type"] == "http.response.start":
                await drain()
            await send(message)

        async def drain() -> None:
            nonlocal complete
            if expects_continue and not asked:
                return  # the client has not sent its body; answering now spares it the upload
            if declared is not None and declared > self.limit * OVERSIZE_FACTOR:
                return  # far too large to be worth reading: the connection closes unread
            bound = max(self.limit, declared or 0)
            drained = 0
            while not complete and drained <= bound:
                message = await receive()
                if message["type"] != "http.request":
                    complete = True
                    break
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    complete = True

        await self.app(scope, tracking_receive, draining_send)
