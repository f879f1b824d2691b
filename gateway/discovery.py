"""``GET /api/discovery``: what this deployment serves, for agents and crawlers (no auth).

Enough for an agent to find its way without the docs: the dialects and their
endpoints, output sizes and prices, limits, and ``capabilities.agentic_commerce``
describing the credit purchase endpoint and its packs.
"""

from __future__ import annotations

from typing import Any

from litestar import Router, get

from engine import prices
from gateway.ratelimit import PLANS
from gateway.settings import Settings


def discovery_document(settings: Settings, packs: list[dict[str, Any]]) -> dict[str, Any]:
    fitinview_prices = prices.price_book("fitinview.tryon.")
    return {
        "name": "tryon-gateway",
        "api_version": "v1",
        "dialects": {
            "fitinview": {
                "auth": "Authorization: Bearer fiv_live_… | fiv_test_…",
                "openapi": "/openapi.json",
                "endpoints": [
                    {
                        "method": "POST",
                        "path": "/api/v1/tryon",
                        "summary": "submit a try-on (sync by default)",
                    },
                    {"method": "GET", "path": "/api/v1/tryon", "summary": "list recent jobs, newest first"},
                    {"method": "GET", "path": "/api/v1/tryon/{job_id}", "summary": "poll a job"},
                    {"method": "GET", "path": "/api/v1/account", "summary": "balance and limits"},
                    {"method": "POST", "path": "/api/v1/credits/purchase", "summary": "buy a credit pack"},
                ],
                "output_sizes": {
                    size: {"longest_side_px": side, "credits": fitinview_prices[size]}
                    for size, side in (("1K", 1024), ("2K", 2048), ("4K", 4096))
                },
                "output_format": "png",
                "sync_wait_seconds": settings.sync_wait_seconds,
                "limits": {
                    "submits_per_minute_per_key": settings.rate_limit_per_min,
                    "reads_per_minute_per_key": settings.read_rate_limit_per_min,
                    "garments_per_request": [1, 3],
                    "max_image_bytes": settings.max_image_bytes,
                    "max_image_pixels": settings.max_image_pixels,
                    "image_formats": ["jpeg", "png", "webp"],
                },
                "features": ["idempotency-key", "webhooks", "test-keys", "field-aliases"],
            },
            "ftmvai": {
                "auth": "Authorization: Bearer <64 hex characters>",
                "endpoints": [
                    {"method": "POST", "path": "/api/v1/generate", "summary": "create an order (202)"},
                    {"method": "GET", "path": "/api/v1/orders/{order_id}", "summary": "poll an order"},
                    {"method": "GET", "path": "/api/v1/account", "summary": "balance, usage and limits"},
                ],
                "styles": {
                    "virtual_tryon": {"credits": prices.price("ftmvai.tryon.standard")},
                    "product_catalog": {
                        "quantities": {
                            str(quantity): {"credits": prices.price(f"ftmvai.catalog.{quantity}")}
                            for quantity in (6, 12)
                        }
                    },
                },
                "quality": {"standard": 1024, "high": 2048},
                "formats": ["jpg", "png"],
                "plans": {
                    name: {
                        "orders_per_hour": plan.per_hour,
                        "orders_per_day": plan.per_day,
                        "orders_in_progress": plan.concurrent,
                    }
                    for name, plan in PLANS.items()
                },
            },
        },
        "capabilities": {
            "agentic_commerce": {
                "enabled": True,
                "protocol": "stripe_shared_payment_tokens",
                "endpoint": {"method": "POST", "path": "/api/v1/credits/purchase"},
                "request": {"pack_slug": "string", "shared_payment_granted_token": "spt_…"},
                "dialect": "fitinview",
                "packs": packs,
            }
        },
    }


def build_discovery_router(settings: Settings, packs: list[dict[str, Any]]) -> Router:
    document = discovery_document(settings, packs)

    @get("/api/discovery", include_in_schema=False)
    async def discovery() -> dict[str, Any]:
        return document

    return Router(path="/", route_handlers=[discovery])
