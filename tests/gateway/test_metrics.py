"""``/metrics`` on the API port: every name after a try-on, bounded labels, the bearer, and the
counts that follow a submit, a job's end, a refusal and a rate limit.

The in-process gateways of the test session share one registry (one process), so these tests
compare counts before and after what they do; counts that only requests move are exact."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine import metrics
from tests.conftest import GatewayFactory
from tests.support.gateway import RunningGateway
from tests.support.image_host import ImageHost

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= set(lbls))


async def scrape(gateway: RunningGateway, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with gateway.http.get(gateway.url("/metrics"), headers=headers) as response:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status, await response.text(), headers


async def samples_of(gateway: RunningGateway, token: str | None = None) -> Samples:
    status, text, headers = await scrape(gateway, token)
    assert status == 200, text
    assert headers["content-type"].startswith("text/plain")
    return parse(text)


def tryon_body(image_host: ImageHost, **extra: Any) -> dict[str, Any]:
    return {
        "person_url": image_host.url("/person.png"),
        "garment_urls": [image_host.url("/shirt.png")],
        **extra,
    }


async def test_metrics_after_a_try_on(gateway: RunningGateway, image_host: ImageHost) -> None:
    _, key = await gateway.account_with_key(credits=100)
    before = await samples_of(gateway)
    status, body, _ = await gateway.request(
        "POST",
        "/api/v1/tryon",
        key=key,
        json=tryon_body(image_host, webhook_url=image_host.url("/status/500")),
    )
    assert status == 200 and body["status"] == "succeeded", body
    job_id = body["job_id"]
    status, polled, _ = await gateway.request("GET", f"/api/v1/tryon/{job_id}", key=key)
    assert status == 200, polled

    # the webhook attempt happens after the job ends: wait for its count
    for _ in range(300):
        after = await samples_of(gateway)
        if value(after, "tryon_webhook_deliveries_total") > value(before, "tryon_webhook_deliveries_total"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the webhook attempt was never counted")
    status, text, _ = await scrape(gateway)

    for name in metrics.METRIC_NAMES:
        assert f"# TYPE {name} " in text, f"{name} is not exposed"
    live = {"dialect": "fitinview", "kind": "tryon", "backend": "local", "mode": "live"}

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tryon_jobs_submitted_total", **live) == 1
    assert delta("tryon_credits_total", movement="debit") == 8  # FitInView 1K
    assert delta("tryon_jobs_finished_total", kind="tryon", status="succeeded", error_code="none") >= 1
    assert delta("tryon_job_queue_wait_seconds_count") >= 1
    assert (
        delta("tryon_generation_duration_seconds_count", backend="local", kind="tryon", output_size="1K") >= 1
    )
    assert delta("tryon_quality_gate_total", verdict="passed") >= 1
    post = {"http_route": "/api/v1/tryon", "http_request_method": "POST", "dialect": "fitinview"}
    assert delta("http_server_request_duration_seconds_count", **post, http_response_status_code="200") == 1
    poll = {"http_route": "/api/v1/tryon/{job_id}", "http_request_method": "GET"}
    assert delta("http_server_request_duration_seconds_count", **poll, http_response_status_code="200") == 1
    assert value(after, "tryon_sync_waiters") == 0  # nobody is waiting any more
    assert value(after, "tryon_queue_depth", source="jobs") >= 0
    assert ("tryon_queue_oldest_age_seconds", ()) in after

    # bounded labels: no id, key, raw path or free text anywhere
    assert_bounded(after, forbidden=[job_id, job_id.removeprefix("job_"), key, key[:16]])


def assert_bounded(samples: Samples, forbidden: Iterable[str]) -> None:
    label_values = {value for _, labels in samples for _, value in labels}
    for word in forbidden:
        assert not any(word in label for label in label_values), word
    routes = {value for _, labels in samples for name, value in labels if name == "http_route"}
    assert routes, "no http_route label at all"
    for route in routes:
        assert route == "unmatched" or route.startswith("/"), route
        assert not re.search(r"job_[0-9a-f]{6}|/\d+(/|$)", route), f"a raw path became a label: {route}"
    for name, value in (pair for _, labels in samples for pair in labels):
        if name in (
            "dialect",
            "kind",
            "backend",
            "mode",
            "status",
            "movement",
            "outcome",
            "verdict",
            "scope",
        ):
            assert re.fullmatch(r"[a-z_0-9]{1,24}", value), (name, value)


async def test_unknown_paths_and_ids_stay_out_of_the_labels(gateway: RunningGateway) -> None:
    _, key = await gateway.account_with_key(credits=10)
    status, _, _ = await gateway.request("GET", "/api/v1/tryon/job_0123456789abcdef01234567", key=key)
    assert status == 404
    status, _, _ = await gateway.request("GET", "/no/such/path/4242")
    assert status == 404
    samples = await samples_of(gateway)
    assert value(samples, "http_server_request_duration_seconds_count", http_route="unmatched") >= 1
    assert_bounded(samples, forbidden=["job_0123456789abcdef01234567", "4242", "/no/such/path"])


async def test_the_bearer_rate_limits_and_refusals(
    gateway_factory: GatewayFactory, image_host: ImageHost
) -> None:
    token = "metrics-token-for-tests"
    gateway = await gateway_factory(metrics_token=token, rate_limit_per_min=1)
    for presented in (None, "wrong", token[:-1]):
        status, text, headers = await scrape(gateway, presented)
        assert status == 401, text
        assert headers.get("x-request-id")
    before = await samples_of(gateway, token)

    _, key = await gateway.account_with_key(credits=100)
    refused = {"person_url": "https://10.1.2.3/person.png", "garment_urls": [image_host.url("/shirt.png")]}
    status, body, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=refused)
    assert status == 400, body
    status, body, _ = await gateway.request("POST", "/api/v1/tryon", key=key, json=tryon_body(image_host))
    assert status == 429, body

    after = await samples_of(gateway, token)
    assert (
        value(after, "tryon_outbound_refused_total", reason="blocked_address")
        - value(before, "tryon_outbound_refused_total", reason="blocked_address")
        == 1
    )
    assert (
        value(after, "tryon_rate_limited_total", dialect="fitinview", scope="submit")
        - value(before, "tryon_rate_limited_total", dialect="fitinview", scope="submit")
        == 1
    )
    assert value(after, "tryon_jobs_submitted_total") == value(before, "tryon_jobs_submitted_total")
