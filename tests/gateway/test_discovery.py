"""GET /api/discovery: enough for an agent to find its way, without a key."""

from __future__ import annotations

from tests.support.gateway import RunningGateway


async def test_discovery_describes_dialects_prices_limits_and_purchases(gateway: RunningGateway) -> None:
    status, document, _ = await gateway.request("GET", "/api/discovery")
    assert status == 200
    assert set(document["dialects"]) == {"fitinview", "ftmvai"}
    fitinview = document["dialects"]["fitinview"]
    assert fitinview["output_sizes"]["2K"] == {"longest_side_px": 2048, "credits": 12}
    assert {"method": "POST", "path": "/api/v1/tryon", "summary": "submit a try-on (sync by default)"} in (
        fitinview["endpoints"]
    )
    assert fitinview["limits"]["submits_per_minute_per_key"] == gateway.settings.rate_limit_per_min
    ftmvai = document["dialects"]["ftmvai"]
    assert ftmvai["styles"]["product_catalog"]["quantities"]["12"]["credits"] == 36
    assert ftmvai["plans"]["free"] == {"orders_per_hour": 10, "orders_per_day": 50, "orders_in_progress": 1}
    commerce = document["capabilities"]["agentic_commerce"]
    assert commerce["endpoint"] == {"method": "POST", "path": "/api/v1/credits/purchase"}
    starter = next(pack for pack in commerce["packs"] if pack["slug"] == "starter")
    assert starter["credits"] == 1200
    # every endpoint it advertises exists (answers something other than 404/405 to its method)
    for endpoint in fitinview["endpoints"] + ftmvai["endpoints"]:
        path = endpoint["path"].replace("{job_id}", "job_x").replace("{order_id}", "1")
        status, _, _ = await gateway.request(endpoint["method"], path)
        assert status == 401, (endpoint, status)
