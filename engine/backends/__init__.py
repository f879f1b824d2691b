"""Generation backends behind one interface (:class:`~engine.backends.base.Backend`).

``stock`` answers test keys; ``local`` is the offline composite; ``gemini``
(Google's image models) plugs in here in its own issue.
"""

from __future__ import annotations

from engine.backends.base import Backend, GeneratedImage, GenerationFailed, TransientBackendError, TryonInput
from engine.backends.local import LocalBackend
from engine.backends.stock import StockBackend

__all__ = [
    "Backend",
    "GeneratedImage",
    "GenerationFailed",
    "TransientBackendError",
    "TryonInput",
    "build_backend",
]

BACKENDS: dict[str, type[LocalBackend] | type[StockBackend]] = {"local": LocalBackend, "stock": StockBackend}


def build_backend(name: str) -> Backend:
    if name not in BACKENDS:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown generation backend {name!r} (known: {known})")
    return BACKENDS[name]()
