"""A local HTTP image host for tests that fetch image URLs.

Tests must never reach the internet, yet the URL path (outbound guard, fetch,
validation) deserves real HTTP. This serves the shared fixtures and a set of
misbehaving endpoints on 127.0.0.1 at a random port. Plain http is fine: a
test's policy allows http and exactly this ``host:port``.

Endpoints:

* ``/person.png``, ``/shirt.png``, ``/trousers.png`` — the real fixtures
* ``/redirect/{n}`` — a chain of ``n`` redirects ending at ``/shirt.png``
* ``/redirect-to?url=...`` — one 302 to an arbitrary URL
* ``/slow?seconds=5`` — answers only after sleeping
* ``/huge?bytes=...`` — streams more bytes than the default cap, no Content-Length
* ``/big-length`` — announces a huge Content-Length
* ``/status/{code}`` — an empty response with that status
* ``/gif`` — a real GIF (an unsupported format)
* ``/bomb.png`` — a small PNG declaring 20000x20000 pixels
* ``/text`` — plain text, not an image
* ``/files/{name}`` — whatever a test registered with :meth:`ImageHost.put`
"""

from __future__ import annotations

import asyncio
import functools
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from io import BytesIO
from pathlib import Path

from aiohttp import web
from PIL import Image

__all__ = ["FIXTURES_DIR", "ImageHost", "make_bomb_png", "make_gif", "serve_image_host"]

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"

_FIXTURE_FILES = {
    "person.png": "person-astronaut.png",
    "shirt.png": "garment-shirt-red-stripes.png",
    "trousers.png": "garment-trousers-blue.png",
}

BOMB_SIDE = 20_000
DEFAULT_HUGE_BYTES = 16 * 1024 * 1024  # just over the contract's 15 MB cap
BIG_CONTENT_LENGTH = 10**12


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@functools.cache
def make_bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit grayscale PNG of ``side`` x ``side`` pixels, all black.

    Built by hand, row by row, so the test never holds the decoded image: the
    file is a few dozen kilobytes and would decode to hundreds of megapixels.
    """
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    compressed = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", compressed)
        + _png_chunk(b"IEND", b"")
    )


@functools.cache
def make_gif() -> bytes:
    """A small real GIF: a format Pillow reads but the gateway does not accept."""
    buffer = BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="GIF")
    return buffer.getvalue()


class ImageHost:
    """A running image host; ``url(path)`` builds URLs to it."""

    def __init__(self, host: str, port: int, files: dict[str, tuple[bytes, str]]) -> None:
        self.host = host
        self.port = port
        self.host_port = f"{host}:{port}"
        self.base_url = f"http://{host}:{port}"
        self.files = files

    def url(self, path: str) -> str:
        """``http://127.0.0.1:PORT/path`` (a leading slash on ``path`` is optional)."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def put(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at ``/files/{name}`` and return its URL."""
        self.files[name] = (data, content_type)
        return self.url(f"files/{name}")


def _build_app(files: dict[str, tuple[bytes, str]]) -> web.Application:
    async def fixture(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _FIXTURE_FILES:
            raise web.HTTPNotFound()
        return web.FileResponse(FIXTURES_DIR / _FIXTURE_FILES[name])

    async def redirect_chain(request: web.Request) -> web.StreamResponse:
        remaining = int(request.match_info["n"])
        target = "/shirt.png" if remaining <= 1 else f"/redirect/{remaining - 1}"
        raise web.HTTPFound(target)

    async def redirect_to(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["url"])

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.query.get("seconds", "5")))
        return web.Response(body=b"too late", content_type="text/plain")

    async def huge(request: web.Request) -> web.StreamResponse:
        total = int(request.query.get("bytes", str(DEFAULT_HUGE_BYTES)))
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"\x00" * (256 * 1024)
        sent = 0
        try:
            while sent < total:
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client gave up, as it should
        return response

    async def big_length(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = BIG_CONTENT_LENGTH
        await response.prepare(request)
        try:
            await response.write(b"\x89PNG\r\n\x1a\n")
        except (ConnectionError, RuntimeError):
            pass
        # Never finish the body: the client must refuse on the header alone.
        if request.transport is not None:
            request.transport.close()
        return response

    async def status(request: web.Request) -> web.StreamResponse:
        return web.Response(status=int(request.match_info["code"]))

    async def gif(request: web.Request) -> web.StreamResponse:
        return web.Response(body=make_gif(), content_type="image/gif")

    async def bomb(request: web.Request) -> web.StreamResponse:
        return web.Response(body=make_bomb_png(), content_type="image/png")

    async def text(request: web.Request) -> web.StreamResponse:
        return web.Response(text="this is not an image\n", content_type="text/plain")

    async def registered(request: web.Request) -> web.StreamResponse:
        entry = files.get(request.match_info["name"])
        if entry is None:
            raise web.HTTPNotFound()
        data, content_type = entry
        return web.Response(body=data, content_type=content_type)

    app = web.Application()
    app.router.add_get("/redirect/{n:\\d+}", redirect_chain)
    app.router.add_get("/redirect-to", redirect_to)
    app.router.add_get("/slow", slow)
    app.router.add_get("/huge", huge)
    app.router.add_get("/big-length", big_length)
    app.router.add_get("/status/{code:\\d{3}}", status)
    app.router.add_get("/gif", gif)
    app.router.add_get("/bomb.png", bomb)
    app.router.add_get("/text", text)
    app.router.add_get("/files/{name}", registered)
    app.router.add_get("/{name}", fixture)
    return app


@asynccontextmanager
async def serve_image_host() -> AsyncIterator[ImageHost]:
    """Run the image host on 127.0.0.1 at a free port for the duration of the block."""
    files: dict[str, tuple[bytes, str]] = {}
    # handler_cancellation: a client that times out on /slow ends the handler,
    # so shutting down does not wait for it.
    runner = web.AppRunner(
        _build_app(files), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield ImageHost("127.0.0.1", port, files)
    finally:
        await runner.cleanup()
