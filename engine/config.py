"""The configuration structs of the engine's integrations, apart from the modules that use them.

:class:`engine.runtime.EngineConfig` holds these; keeping them here lets the runtime be built
without importing the payment and webhook modules, which import the runtime themselves — so
the two never import each other.
"""

from __future__ import annotations

import msgspec

from engine.errors import InvalidRequest

DEFAULT_STRIPE_API_VERSION = "2025-09-30.clover"


class WebhookConfig(msgspec.Struct, frozen=True, kw_only=True):
    backoff_scale: float
    timeout_seconds: float
    response_excerpt_bytes: int = 1024
    delays: tuple[float, ...] = (1.0, 4.0, 16.0)


class CreditPack(msgspec.Struct, frozen=True, kw_only=True):
    slug: str
    credits: int
    amount: int
    """The price in the currency's minor unit (cents)."""
    currency: str = "usd"


DEFAULT_PACKS: tuple[CreditPack, ...] = (
    CreditPack(slug="starter", credits=1200, amount=1200, currency="usd"),
    CreditPack(slug="growth", credits=6000, amount=5000, currency="usd"),
    CreditPack(slug="scale", credits=15000, amount=10000, currency="usd"),
)


class PaymentsConfig(msgspec.Struct, frozen=True, kw_only=True):
    stripe_api_key: str = ""
    """Empty: live-key purchases answer 503 (test keys still get their fake answer)."""
    webhook_secret: str = ""
    """Empty: every webhook is refused (400)."""
    base_url: str | None = None
    """Stripe's API base (tests point it at a local fake); None: Stripe's own."""
    api_version: str = DEFAULT_STRIPE_API_VERSION
    timeout_seconds: float = 30.0
    packs: tuple[CreditPack, ...] = DEFAULT_PACKS

    def pack(self, slug: str) -> CreditPack:
        for pack in self.packs:
            if pack.slug == slug:
                return pack
        raise UnknownPack(slug)


class UnknownPack(InvalidRequest):
    def __init__(self, slug: str) -> None:
        super().__init__(f"Unknown pack_slug: {slug!r}", field="pack_slug")
        self.slug = slug
