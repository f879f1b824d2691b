"""A local fake of the Gemini REST API (``generateContent``), for the ``gemini`` backend's tests.

It speaks the real wire format, so the real google-genai SDK talks to it through
``HttpOptions(base_url=...)``::

    async with serve_fake_gemini(api_key="k") as fake:
        fake.script(["status:429", "image"])   # answers, in arrival order
        ...                                      # GeminiConfig(api_key="k", base_url=fake.base_url)
        fake.requests[0].texts()                 # what the SDK sent

Behaviours (one per request; ``"image"`` once the script is used up):

- ``image``: the person (first inline image) scaled to the size ``imageSize`` implies
  (1K/2K/4K longest side), with a coloured "shirt" rectangle over the torso; the face is untouched.
- ``blank``: a flat grey image of that size.
- ``thought_then_image``: a flat magenta image part marked ``thought: true``, then the ``image`` answer.
- ``no_image``: a text-only answer (finish reason STOP).
- ``blocked_prompt``: ``promptFeedback.blockReason = SAFETY`` and no candidates.
- ``finish_safety`` / ``finish_image_safety`` / ``prohibited`` / ``finish:<REASON>``: a candidate
  without content and that finish reason.
- ``status:<code>``: an error answer with that HTTP status (Google's error JSON).
- ``hang``: no answer until the server stops (longer than any client timeout in the tests).
- ``slow:<seconds>``: the ``image`` answer, sent only after that many seconds.
- ``drop``: the ``image`` answer's status line, headers (with its full ``Content-Length``) and
  half its body, then the connection is closed: a connection lost mid-response.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image, ImageDraw

SIZES = {"1K": 1024, "2K": 2048, "4K": 4096}
SHIRT = (20, 160, 90)
THOUGHT = (255, 0, 255)
BLANK = (128, 128, 128)
MODEL_VERSION = "fake-gemini-1"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FINISH_BEHAVIOURS = {
    "finish_safety": "SAFETY",
    "finish_image_safety": "IMAGE_SAFETY",
    "prohibited": "PROHIBITED_CONTENT",
}


@dataclass
class RecordedRequest:
    """One request as the fake server received it."""

    model: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    behaviour: str = ""

    def parts(self) -> list[dict[str, Any]]:
        return [part for content in self.body.get("contents", []) for part in content.get("parts", [])]

    def images(self) -> list[tuple[str, bytes]]:
        """(mime type, bytes) of each inline image part, in order."""
        found = []
        for part in self.parts():
            blob = part.get("inlineData") or part.get("inline_data")
            if blob:
                mime = blob.get("mimeType") or blob.get("mime_type") or ""
                # the API takes standard or URL-safe base64 (the SDK sends URL-safe)
                found.append(
                    (mime, base64.urlsafe_b64decode(blob["data"].replace("+", "-").replace("/", "_")))
                )
        return found

    def kinds(self) -> list[str]:
        """``image`` / ``text`` for each part, in order."""
        return ["text" if "text" in part else "image" for part in self.parts()]

    def texts(self) -> list[str]:
        return [part["text"] for part in self.parts() if "text" in part]

    def system_text(self) -> str:
        instruction = self.body.get("systemInstruction") or self.body.get("system_instruction") or {}
        return "\n".join(part.get("text", "") for part in instruction.get("parts", []))

    @property
    def generation_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.body.get("generationConfig") or {}
        return config

    @property
    def image_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.generation_config.get("imageConfig") or {}
        return config

    @property
    def seed(self) -> int | None:
        seed = self.generation_config.get("seed")
        return None if seed is None else int(seed)


@dataclass
class FakeGemini:
    api_key: str
    base_url: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)
    response_delay: float = 0.0
    """Seconds each answer waits before it is sent (to observe concurrency)."""
    in_flight: int = 0
    max_in_flight: int = 0
    _script: list[str] = field(default_factory=list)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def script(self, behaviours: list[str]) -> None:
        """Answer the next requests with these behaviours, in arrival order (then ``image``)."""
        self._script = list(behaviours)

    def reset(self) -> None:
        self.requests.clear()
        self._script = []
        self.response_delay = 0.0
        self.max_in_flight = 0

    # the endpoint ---------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = request.match_info["target"]
        model, _, method = target.partition(":")
        if method != "generateContent":
            return _error(404, f"unknown method {method!r}")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Invalid JSON payload received.")
        behaviour = self._script.pop(0) if self._script else "image"
        recorded = RecordedRequest(
            model=model, path=request.path, headers=dict(request.headers), body=body, behaviour=behaviour
        )
        self.requests.append(recorded)
        if request.headers.get("x-goog-api-key") != self.api_key:
            return _error(400, "API key not valid. Please pass a valid API key.")
        if behaviour == "hang":  # not counted in flight: it outlives the client's timeout
            await self._release.wait()
            return _error(503, "server stopping")
        if behaviour.startswith("slow:"):
            try:
                await asyncio.wait_for(self._release.wait(), float(behaviour.split(":", 1)[1]))
            except TimeoutError:
                pass
            behaviour = "image"
        if behaviour == "drop":
            return await _drop_midway(request, await self._answer("image", recorded))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.response_delay:
                await asyncio.sleep(self.response_delay)
            return await self._answer(behaviour, recorded)
        finally:
            self.in_flight -= 1

    async def _answer(self, behaviour: str, recorded: RecordedRequest) -> web.Response:
        if behaviour.startswith("status:"):
            return _error(int(behaviour.split(":", 1)[1]), f"scripted {behaviour}")
        usage = _usage(recorded)
        if behaviour == "blocked_prompt":
            return web.json_response(
                {
                    "promptFeedback": {"blockReason": "SAFETY"},
                    "usageMetadata": usage,
                    "modelVersion": MODEL_VERSION,
                }
            )
        if behaviour in FINISH_BEHAVIOURS or behaviour.startswith("finish:"):
            reason = FINISH_BEHAVIOURS.get(behaviour) or behaviour.split(":", 1)[1]
            candidate = {"finishReason": reason, "index": 0}
            return web.json_response(
                {"candidates": [candidate], "usageMetadata": usage, "modelVersion": MODEL_VERSION}
            )
        size = SIZES.get(str(recorded.image_config.get("imageSize", "1K")), 1024)
        parts: list[dict[str, Any]]
        if behaviour == "no_image":
            parts = [{"text": "I can't produce an image for this request."}]
        elif behaviour == "blank":
            parts = [_image_part(Image.new("RGB", (size, size), BLANK))]
        elif behaviour in ("image", "thought_then_image"):
            person = await asyncio.to_thread(_dressed_person, recorded, size)
            parts = [_image_part(person)]
            if behaviour == "thought_then_image":
                thought = _image_part(Image.new("RGB", person.size, THOUGHT))
                parts = [{"text": "Planning the composition.", "thought": True}, {**thought, "thought": True}]
                parts.append(_image_part(person))
        else:
            return _error(500, f"fake gemini: unknown scripted behaviour {behaviour!r}")
        return web.json_response(
            {
                "candidates": [
                    {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
                ],
                "usageMetadata": usage,
                "modelVersion": MODEL_VERSION,
            }
        )


async def _drop_midway(request: web.Request, answer: web.Response) -> web.StreamResponse:
    """Send ``answer``'s headers and the first half of its body, then cut the connection."""
    body = answer.body
    assert isinstance(body, bytes)
    streamed = web.StreamResponse(status=answer.status, headers={"Content-Type": "application/json"})
    streamed.content_length = len(body)
    await streamed.prepare(request)
    await streamed.write(body[: len(body) // 2])
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()
    return streamed


def _error(status: int, message: str) -> web.Response:
    name = STATUS_NAMES.get(status, "UNKNOWN")
    return web.json_response({"error": {"code": status, "message": message, "status": name}}, status=status)


def _usage(recorded: RecordedRequest) -> dict[str, int]:
    prompt = 258 * len(recorded.images()) + sum(len(text) for text in recorded.texts()) // 4
    candidates = 1120 if recorded.image_config.get("imageSize", "1K") != "4K" else 2000
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates,
    }


def _dressed_person(recorded: RecordedRequest, size: int) -> Image.Image:
    images = recorded.images()
    if images:
        source = Image.open(io.BytesIO(images[0][1]))
        source.load()
        person = source.convert("RGB")
    else:
        person = Image.new("RGB", (size, size), BLANK)
    scale = size / max(person.size)
    person = person.resize(
        (max(1, round(person.width * scale)), max(1, round(person.height * scale))), Image.Resampling.BILINEAR
    )
    width, height = person.size
    ImageDraw.Draw(person).rectangle(
        (round(width * 0.3), round(height * 0.5), round(width * 0.7), round(height * 0.9)), fill=SHIRT
    )
    return person


def _image_part(image: Image.Image) -> dict[str, Any]:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(out.getvalue()).decode()}}


@asynccontextmanager
async def serve_fake_gemini(api_key: str = "fake-gemini-key") -> AsyncIterator[FakeGemini]:
    """Serve a :class:`FakeGemini` on 127.0.0.1 at a random port until the block ends."""
    fake = FakeGemini(api_key=api_key)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{version}/models/{target}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        fake._release.set()
        await runner.cleanup()
