"""Reading a JSON request body that must be an object, with the errors every dialect gives."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.errors import InvalidRequest


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a dict; anything else (empty, malformed, an array) is an InvalidRequest."""
    try:
        body = msgspec.json.decode(raw) if raw.strip() else None
    except msgspec.DecodeError:
        raise InvalidRequest("Request body must be valid JSON") from None
    except RecursionError:  # msgspec gives up on very deep nesting; no request needs it
        raise InvalidRequest("Request body must be valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    return body
