"""The FitInView contract as an OpenAPI document, served at ``/openapi.json``."""

from __future__ import annotations

from pathlib import Path

OPENAPI_DOCUMENT: bytes = (Path(__file__).parent / "openapi.json").read_bytes()
