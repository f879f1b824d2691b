"""The one small interface every generation backend implements.

Backends: ``stock`` (test keys: a fixed image, no model), ``local`` (an offline
Pillow composite) and, in its own issue, ``gemini``. The job actor picks one,
hands it validated input bytes and records what comes back; a backend knows
nothing of jobs, credits or storage.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec
from PIL import Image

from engine.imaging import content_type_for, encode

OutputFormat = Literal["png", "jpeg"]


class TryonInput(msgspec.Struct, frozen=True, kw_only=True):
    """What a try-on needs: already fetched, validated and EXIF-oriented images."""

    person: bytes
    garments: tuple[bytes, ...]
    longest_side: int
    """Target length in pixels of the result's longest side (1024/2048/4096)."""
    output_format: OutputFormat = "png"
    seed: int | None = None
    prompt: str | None = None
    style_hint: str | None = None
    negative_prompt: str | None = None


class CatalogInput(msgspec.Struct, frozen=True, kw_only=True):
    """What a product catalog needs: one validated product photo and how many shots."""

    product: bytes
    quantity: int
    """6 or 12 distinct shots."""
    longest_side: int
    output_format: OutputFormat = "jpeg"
    seed: int | None = None


class GeneratedImage(msgspec.Struct, frozen=True, kw_only=True):
    data: bytes
    content_type: str
    width: int
    height: int

    @classmethod
    def encoded(cls, image: Image.Image, fmt: OutputFormat) -> GeneratedImage:
        """``image`` encoded in ``fmt``, with its size: what every backend hands back."""
        return cls(
            data=encode(image, fmt),
            content_type=content_type_for(fmt),
            width=image.width,
            height=image.height,
        )


class GenerationFailed(Exception):
    """A backend could not produce a result.

    ``code`` and ``reason`` are the words DECISIONS.md gives (for example
    ``generation_failed`` / ``content_blocked``); the job actor records them and
    applies the refund rule for ``reason``.
    """

    def __init__(self, reason: str, code: str = "generation_failed") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class TransientBackendError(Exception):
    """Worth retrying the whole job later (the model or a service hiccupped)."""


class Backend(Protocol):
    name: str

    async def tryon(self, request: TryonInput) -> GeneratedImage:
        """Compose the garments onto the person; raise GenerationFailed on a definite failure."""
        ...

    async def catalog(self, request: CatalogInput) -> list[GeneratedImage]:
        """Exactly ``request.quantity`` distinct shots of the product, or GenerationFailed."""
        ...
