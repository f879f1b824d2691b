"""Storage failures, kept apart from the domain hierarchy: the engine decides what they mean
(a failed job with ``storage_failed``, or an unavailable service at submit time)."""

from __future__ import annotations


class StorageError(Exception):
    """An object could not be written, read or signed."""
