"""The two default price books, with per-account overrides.

Prices are integers on the one ledger. A price is named ``<dialect>.<kind>.<variant>``
(for example ``fitinview.tryon.2K``); an account's ``prices`` object may override
any of them (set by operators).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_PRICES: dict[str, int] = {
    "fitinview.tryon.1K": 8,
    "fitinview.tryon.2K": 12,
    "fitinview.tryon.4K": 20,
    "ftmvai.tryon.standard": 1,
    "ftmvai.catalog.6": 24,
    "ftmvai.catalog.12": 36,
}


def price(name: str, overrides: Mapping[str, Any] | None = None) -> int:
    if overrides and name in overrides:
        return int(overrides[name])
    return DEFAULT_PRICES[name]


def price_book(prefix: str, overrides: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Every price under ``prefix`` (e.g. ``fitinview.tryon.``), keyed by its variant."""
    return {
        name.removeprefix(prefix): price(name, overrides)
        for name in DEFAULT_PRICES
        if name.startswith(prefix)
    }
