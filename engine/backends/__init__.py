"""Generation backends behind one interface (TEMPORARY stand-in until the backends land)."""

from __future__ import annotations

from engine.backends.base import Backend, GeneratedImage, GenerationFailed, TransientBackendError, TryonInput

__all__ = [
    "Backend",
    "GeneratedImage",
    "GenerationFailed",
    "TransientBackendError",
    "TryonInput",
    "build_backend",
]


def build_backend(name: str) -> Backend:
    import io

    from PIL import Image

    class _Temp:
        def __init__(self, name: str) -> None:
            self.name = name

        async def tryon(self, request: TryonInput) -> GeneratedImage:
            size = request.longest_side
            image = Image.new("RGB", (size, size), (200, 100, 50))
            out = io.BytesIO()
            fmt = "PNG" if request.output_format == "png" else "JPEG"
            image.save(out, fmt)
            return GeneratedImage(
                data=out.getvalue(), content_type=f"image/{request.output_format}", width=size, height=size
            )

    if name not in ("stock", "local"):
        raise ValueError(name)
    return _Temp(name)
