"""A JSON answer encoded once and sent as a bare ASGI app: what the hot GET handlers return.

Returning a ``Response`` (or a ``msgspec.Struct``) makes Litestar build a ``Response``, merge
layered headers and cookies, render the content and build an ``ASGIResponse`` on every request;
on a poll that was a visible share of its CPU (issue 10). A handler annotated ``-> ASGIApp`` may
return this instead: the same bytes on the wire as Litestar's own answer for these routes (the
body through Litestar's ``encode_json``; the route's headers, then ``content-type`` and
``content-length``, names lowercased, values latin-1), with none of the per-request machinery.
The routes that use it set no layered response headers, cookies, caching or ``after_request``
hooks, which such an answer would not get.
"""

from __future__ import annotations

from typing import Any

from litestar.serialization import encode_json
from litestar.types import Message, Receive, Scope, Send

_JSON = (b"content-type", b"application/json")


class JsonAnswer:
    """``content`` as ``application/json`` with ``status`` and ``headers`` (sent in this order)."""

    __slots__ = ("_body", "_start")

    def __init__(self, content: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = encode_json(content)
        raw = (
            [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
            if headers
            else []
        )
        raw.append(_JSON)
        raw.append((b"content-length", str(len(body)).encode()))
        self._start: Message = {"type": "http.response.start", "status": status, "headers": raw}
        self._body: Message = {"type": "http.response.body", "body": body, "more_body": False}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(self._start)
        await send(self._body)
