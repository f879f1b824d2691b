"""API key and webhook secret formats, and how keys are stored.

Keys are shown once, at minting, and stored only as a SHA-256 hash: the lookup
is an index probe on the hash, so no plaintext comparison can leak timing.
FitInView keys read ``fiv_live_…`` / ``fiv_test_…``; FtmvAI keys are 64 lowercase
hex characters (their live/test mode is kept server-side).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Literal

Dialect = Literal["fitinview", "ftmvai"]
KeyMode = Literal["live", "test"]
DIALECTS: tuple[Dialect, ...] = ("fitinview", "ftmvai")

_FITINVIEW_KEY = re.compile(r"^fiv_(live|test)_[A-Za-z0-9_-]{16,128}$")
_FTMVAI_KEY = re.compile(r"^[0-9a-f]{64}$")


def new_key(dialect: Dialect, mode: KeyMode) -> str:
    if dialect == "fitinview":
        return f"fiv_{mode}_{secrets.token_urlsafe(30)}"
    return secrets.token_hex(32)


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def key_hint(plaintext: str) -> str:
    """A short, non-secret prefix that lets ops recognise a key in listings."""
    return plaintext[:12] + "…"


def dialect_of_token(token: str) -> Dialect | None:
    """Which dialect a presented token is shaped for (None: neither)."""
    if _FITINVIEW_KEY.match(token):
        return "fitinview"
    if _FTMVAI_KEY.match(token):
        return "ftmvai"
    return None
