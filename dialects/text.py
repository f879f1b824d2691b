"""Text a client sent that PostgreSQL cannot store, caught before it gets there.

PostgreSQL's ``text`` and ``jsonb`` refuse the NUL character, and UTF-8 cannot carry an
unpaired surrogate (JSON's ``"\\ud800"``); either would fail the query and answer 500. Every
dialect checks client text with :func:`storable_text` first, so the answer is a 400 (or the
dialect's 404 for an id) naming the field.
"""

from __future__ import annotations

import re

from engine.errors import InvalidRequest

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable(value: str) -> bool:
    """Whether ``value`` can be stored in PostgreSQL text and encoded as UTF-8."""
    return _UNSTORABLE.search(value) is None


def storable_text(field: str, value: str) -> str:
    """``value`` unchanged, or an :class:`InvalidRequest` naming ``field``."""
    if not is_storable(value):
        raise InvalidRequest(f"{field} must not contain NUL or unpaired surrogate characters", field=field)
    return value
