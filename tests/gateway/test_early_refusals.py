"""Refusals that come before the upload is read still reach ordinary clients.

A guard (no key, unknown or disabled key, rate limit) answers before the handler reads the body;
without draining, the server closed with megabytes unread and the client saw ``Connection reset
by peer`` instead of the answer (gateway/body_drain.py). Each client here sends the whole body
before it reads the response, as users' code does: urllib, requests, httpx, curl (with and
without ``Expect: 100-continue``) and Node's fetch.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from tests.dialects.ftmvai.test_orders import poll, tryon_body
from tests.support.gateway import RunningGateway

MB = 1_000_000
SIZES = (1 * MB, 20 * MB)
FITINVIEW = "/api/v1/tryon"
FTMVAI = "/api/v1/generate"

Answer = tuple[int, Any]
Client = Callable[[str, dict[str, str], Path], Answer]


def _body(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes (a huge base64-looking person image)."""
    head, tail = b'{"person_image": "', b'"}'
    return head + b"A" * (size - len(head) - len(tail)) + tail


def _urllib(url: str, headers: dict[str, str], body: Path) -> Answer:
    request = urllib.request.Request(url, data=body.read_bytes(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _requests(url: str, headers: dict[str, str], body: Path) -> Answer:
    response = requests.post(url, data=body.read_bytes(), headers=headers, timeout=60)
    return response.status_code, response.json()


def _httpx(url: str, headers: dict[str, str], body: Path) -> Answer:
    response = httpx.post(url, content=body.read_bytes(), headers=headers, timeout=60)
    return response.status_code, response.json()


def _curl(url: str, headers: dict[str, str], body: Path, *extra: str) -> Answer:
    args = ["curl", "-sS", "--max-time", "60", "-X", "POST", "--data-binary", f"@{body}", *extra]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        [*args, "-w", "\n%{http_code}", url], capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr
    text, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(text)


def _curl_no_expect(url: str, headers: dict[str, str], body: Path) -> Answer:
    """curl sends large bodies after ``Expect: 100-continue``; without it, it sends them at once."""
    return _curl(url, headers, body, "-H", "Expect:")


NODE_FETCH = """
const fs = require("fs");
const [url, headers, path] = process.argv.slice(1);
fetch(url, {method: "POST", headers: JSON.parse(headers), body: fs.readFileSync(path)})
  .then(async (r) => console.log(JSON.stringify([r.status, JSON.parse(await r.text())])))
  .catch((e) => { console.error(String(e), e.cause); process.exit(1); });
"""


def _node(url: str, headers: dict[str, str], body: Path) -> Answer:
    done = subprocess.run(
        ["node", "-e", NODE_FETCH, url, json.dumps(headers), str(body)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status, parsed = json.loads(done.stdout)
    return int(status), parsed


CLIENTS: dict[str, Client] = {
    "urllib": _urllib,
    "requests": _requests,
    "httpx": _httpx,
    "curl": _curl,
    "curl-no-expect": _curl_no_expect,
    "node-fetch": _node,
}


class Refusal:
    """One early refusal: where, with which key, and what the dialect must answer."""

    def __init__(self, name: str, path: str, key: str | None, status: int, check: Callable[[Any], bool]):
        self.name, self.path, self.key, self.status, self.check = name, path, key, status, check

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.key is not None:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers


def _fitinview(detail: str) -> Callable[[Any], bool]:
    return lambda body: body == {"detail": detail}


def _ftmvai(code: str) -> Callable[[Any], bool]:
    return lambda body: body["success"] is False and body["error"]["code"] == code


@pytest.fixture(scope="module")
async def refusing(gateway_factory: Any) -> RunningGateway:
    """One FitInView submit per key per hour, so a key's second submit is refused by the limiter."""
    gateway: RunningGateway = await gateway_factory(rate_limit_per_min=1, rate_limit_window_seconds=3600)
    return gateway


async def _disabled_key(gateway: RunningGateway, dialect: str) -> str:
    account_id = await gateway.new_account(dialect=dialect)
    key = await gateway.new_key(account_id)
    await gateway.admin("POST", f"/keys/{key['id']}/disable", {"reason": "leaked"})
    return str(key["key"])


async def _fitinview_limited_key(gateway: RunningGateway) -> str:
    _, key = await gateway.account_with_key()
    status, _, _ = await gateway.request("POST", FITINVIEW, key=key, json={})
    assert status == 400  # counted against the submit window all the same
    status, _, _ = await gateway.request("POST", FITINVIEW, key=key, json={})
    assert status == 429
    return key


async def _ftmvai_limited_key(gateway: RunningGateway) -> str:
    """A free plan allows 10 orders per fixed UTC hour: use them up (cheaply, with a test key)."""
    into_hour = time.time() % 3600
    if into_hour > 3600 - 120:  # do not straddle the hour's end
        await asyncio.sleep(3600 - into_hour + 1)
    account_id = await gateway.new_account(dialect="ftmvai", credits=0, plan="free")
    key = str((await gateway.new_key(account_id, "test"))["key"])
    for _ in range(10):
        status, created, _ = await gateway.request("POST", FTMVAI, key=key, json=tryon_body())
        assert status == 202, created
        await poll(gateway, key, created["order_id"])
    status, refused, _ = await gateway.request("POST", FTMVAI, key=key, json=tryon_body())
    assert status == 429 and refused["error"]["details"]["limit"] == "hour", refused
    return key


@pytest.fixture(scope="module")
async def refusals(refusing: RunningGateway) -> list[Refusal]:
    return [
        Refusal("fitinview no key", FITINVIEW, None, 401, _fitinview("Missing or invalid API key")),
        Refusal(
            "fitinview unknown key",
            FITINVIEW,
            "fiv_live_" + secrets.token_hex(20),
            401,
            _fitinview("Missing or invalid API key"),
        ),
        Refusal(
            "fitinview disabled key",
            FITINVIEW,
            await _disabled_key(refusing, "fitinview"),
            403,
            _fitinview("Key disabled"),
        ),
        Refusal(
            "fitinview rate-limited key",
            FITINVIEW,
            await _fitinview_limited_key(refusing),
            429,
            _fitinview("Rate limit exceeded"),
        ),
        Refusal("ftmvai no key", FTMVAI, None, 401, _ftmvai("UNAUTHORIZED")),
        Refusal("ftmvai unknown key", FTMVAI, secrets.token_hex(32), 401, _ftmvai("UNAUTHORIZED")),
        Refusal(
            "ftmvai disabled key",
            FTMVAI,
            await _disabled_key(refusing, "ftmvai"),
            403,
            _ftmvai("KEY_DISABLED"),
        ),
        Refusal(
            "ftmvai rate-limited key",
            FTMVAI,
            await _ftmvai_limited_key(refusing),
            429,
            _ftmvai("RATE_LIMITED"),
        ),
    ]


@pytest.fixture(scope="module")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("bodies")
    paths = {}
    for size in SIZES:
        paths[size] = root / f"{size}.json"
        paths[size].write_bytes(_body(size))
    return paths


@pytest.mark.parametrize("size", SIZES, ids=["1MB", "20MB"])
@pytest.mark.parametrize("client", list(CLIENTS))
async def test_every_client_reads_an_early_refusal(
    refusing: RunningGateway, refusals: list[Refusal], bodies: dict[int, Path], client: str, size: int
) -> None:
    if client == "node-fetch" and shutil.which("node") is None:
        pytest.skip("node is not on PATH")
    send = CLIENTS[client]
    for refusal in refusals:
        status, body = await asyncio.to_thread(
            send, refusing.url(refusal.path), refusal.headers(), bodies[size]
        )
        assert status == refusal.status and refusal.check(body), (refusal.name, status, body)


async def test_one_session_reads_several_refusals_in_a_row(
    refusing: RunningGateway, refusals: list[Refusal], bodies: dict[int, Path]
) -> None:
    """A keep-alive session that uploads again after a refusal gets every answer in turn."""

    def several() -> list[int]:
        with requests.Session() as session:
            statuses = []
            for refusal in refusals[:3]:
                response = session.post(
                    refusing.url(refusal.path), data=bodies[SIZES[0]].read_bytes(), headers=refusal.headers()
                )
                statuses.append(response.status_code)
            return statuses

    assert await asyncio.to_thread(several) == [refusal.status for refusal in refusals[:3]]


@pytest.fixture(scope="module")
async def small_limit(gateway_factory: Any) -> RunningGateway:
    gateway: RunningGateway = await gateway_factory(max_body_bytes=15 * MB)
    return gateway


@pytest.mark.parametrize("client", list(CLIENTS))
async def test_an_upload_over_the_size_limit_reads_its_refusal(
    small_limit: RunningGateway, bodies: dict[int, Path], client: str
) -> None:
    """20 MB against a 15 MB limit: refused without being parsed, and the client reads why."""
    if client == "node-fetch" and shutil.which("node") is None:
        pytest.skip("node is not on PATH")
    _, fiv_key = await small_limit.account_with_key()
    _, ftm_key = await small_limit.account_with_key(dialect="ftmvai")
    send = CLIENTS[client]
    for path, key in ((FITINVIEW, fiv_key), (FTMVAI, ftm_key)):
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        status, body = await asyncio.to_thread(send, small_limit.url(path), headers, bodies[20 * MB])
        assert status == 400, (path, status, body)
        message = body["detail"] if path == FITINVIEW else body["error"]["message"]
        assert message == "image too large: request body", body
