"""Remembering what a backend worked out from an input photo, keyed by the photo's digest.

Shops send the same model photo with garment after garment, and the same garment on several
models: finding the person (face detection and GrabCut, about 0.45 s of CPU at 1K) and cutting a
garment out of its backdrop are the same work every time. A few dozen recent answers are kept per
worker process; the key is the SHA-256 of the photo's bytes (and the working size), so a different
photo can never get another's answer.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class DigestMemo(Generic[T]):
    """An LRU of ``capacity`` values computed from bytes (thread-safe: backends run in threads)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._values: OrderedDict[tuple[str, Hashable], T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, data: bytes, variant: Hashable, compute: Callable[[], T]) -> T:
        """The value for ``data`` (and ``variant``), computed by ``compute()`` when not remembered."""
        key = (hashlib.sha256(data).hexdigest(), variant)
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()  # outside the lock: two threads may compute the same value once each
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self._capacity:
                self._values.popitem(last=False)
        return value
