"""Generation backends behind one interface (:class:`~engine.backends.base.Backend`).

``stock`` answers test keys; ``local`` is the offline composite; ``gemini``
(Google's image models, :mod:`engine.backends.gemini`) needs a
:class:`~engine.backends.gemini.GeminiConfig`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.backends.base import Backend, GeneratedImage, GenerationFailed, TransientBackendError, TryonInput
from engine.backends.local import LocalBackend
from engine.backends.stock import StockBackend

if TYPE_CHECKING:  # the SDK takes about a second to import: only when the gemini backend is built
    from engine.backends.gemini import GeminiConfig

__all__ = [
    "Backend",
    "GeneratedImage",
    "GenerationFailed",
    "TransientBackendError",
    "TryonInput",
    "build_backend",
]

BACKENDS: dict[str, type[LocalBackend] | type[StockBackend]] = {"local": LocalBackend, "stock": StockBackend}


def build_backend(name: str, *, gemini: GeminiConfig | None = None) -> Backend:
    if name == "gemini":
        if gemini is None:
            raise ValueError(
                "the gemini backend needs its settings (API key, model, ...): "
                "pass build_backend('gemini', gemini=GeminiConfig(...))"
            )
        from engine.backends.gemini import GeminiBackend

        return GeminiBackend(gemini)
    if name not in BACKENDS:
        known = ", ".join(sorted([*BACKENDS, "gemini"]))
        raise ValueError(f"unknown generation backend {name!r} (known: {known})")
    return BACKENDS[name]()
