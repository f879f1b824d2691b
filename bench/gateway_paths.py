"""The gateway's hot paths over HTTP: polls and async submits, both dialects, test and live keys.

A poll reads one queued job (``GET /api/v1/tryon/{id}``, ``GET /api/v1/orders/{id}``) with the key
that made it: authentication, the read limit, one job read, presigned input links, the dialect's
JSON. An async submit (``wait: false``; FtmvAI is always async) carries a 256 px person and garment
in base64: authentication, the submit limit (FtmvAI: its plan windows and in-progress count),
decoding and checking both images, storing them in S3, the job row and (live keys) the debit in one
transaction, the enqueue. Submits rotate over the run's accounts; no worker runs meanwhile, and
each submit phase's queued jobs are failed before the next (FtmvAI's in-progress limit).

FtmvAI admits ``concurrent`` (5 on ``paid``) unfinished orders per account and nothing finishes
them during a phase, so a phase can take at most 5 x its accounts' orders before every further one
is a 429. Each FtmvAI phase therefore starts with a short probe at full load, and if the rate it
saw would use more than half of the slots over the warm-up and the measurement, it opens more
accounts first (:func:`add_ftmvai_customers`), so the figure counts the gateway's work rather than
the limit. Failing the queued orders while the load runs would free slots too, but that bulk
``UPDATE`` would contend with the measured ``INSERT``s on the usage rows the jobs' triggers keep.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
from typing import Any

import msgspec

from bench import loadgen
from bench.ceilings import Shape
from bench.loadgen import LoadRequest, LoadResult
from bench.world import CREDITS, Customer, World, settle_unfinished
from ledger.database import Database
from ledger.service import LedgerService

SUBMIT_PATHS = {"fitinview": "/api/v1/tryon", "ftmvai": "/api/v1/generate"}
FTMVAI_CONCURRENT = 5
"""Unfinished orders a ``paid`` FtmvAI account may have (``gateway.ratelimit.PLANS``)."""
SLOT_HEADROOM = 2.0
"""Accounts enough for twice the probed rate: wrk's threads start at random places in the rotation,
so some accounts are reached more often than others."""


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def http_json(method: str, url: str, key: str, body: str | None = None) -> dict[str, Any]:
    data = body.encode() if body is not None else None
    headers = {**_auth(key), "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def seed_jobs(base: str, world: World, bodies: dict[str, str]) -> dict[str, str]:
    """One queued test job per dialect, made by each dialect's first customer: its poll path."""
    fitinview = http_json(
        "POST", base + SUBMIT_PATHS["fitinview"], world.fitinview[0].test_key, bodies["fitinview"]
    )
    ftmvai = http_json("POST", base + SUBMIT_PATHS["ftmvai"], world.ftmvai[0].test_key, bodies["ftmvai"])
    return {
        "fitinview": f"/api/v1/tryon/{fitinview['job_id']}",
        "ftmvai": f"/api/v1/orders/{ftmvai['order_id']}",
    }


def measure_poll(base: str, world: World, shape: Shape, polls: dict[str, str]) -> dict[str, LoadResult]:
    results: dict[str, LoadResult] = {}
    for dialect, path in polls.items():
        key = getattr(world, dialect)[0].test_key
        request = LoadRequest(method="GET", path=path, headers=_auth(key))
        results[dialect] = loadgen.run(shape.spec(base, [request]))
    return results


def measure_submit(
    base: str, world: World, shape: Shape, bodies: dict[str, str], database_url: str
) -> dict[str, LoadResult]:
    """``{dialect}_{mode}`` → the rate of accepted async submits."""
    results: dict[str, LoadResult] = {}
    for dialect in ("fitinview", "ftmvai"):
        for mode in ("test", "live"):
            requests = _submits(dialect, mode, getattr(world, dialect), bodies[dialect])
            if dialect == "ftmvai":
                probe = loadgen.run(
                    msgspec.structs.replace(
                        shape.spec(base, requests), duration=max(1.0, shape.warmup), warmup=0
                    )
                )
                _settle(database_url)
                orders = probe.rate * (shape.warmup + shape.duration) * SLOT_HEADROOM
                missing = math.ceil(orders / FTMVAI_CONCURRENT) - len(world.ftmvai)
                if missing > 0:
                    extra = asyncio.run(add_ftmvai_customers(database_url, len(world.ftmvai), missing))
                    world.ftmvai.extend(extra)
                    requests = _submits(dialect, mode, world.ftmvai, bodies[dialect])
            results[f"{dialect}_{mode}"] = loadgen.run(shape.spec(base, requests))
            _settle(database_url)
    return results


def _settle(database_url: str) -> None:
    """Fail a phase's leftover jobs, then again a moment later: the load generator stops with up to
    ``connections`` submits still being served, and their jobs commit after it has returned."""
    asyncio.run(settle_unfinished(database_url))
    time.sleep(0.5)
    asyncio.run(settle_unfinished(database_url))


def _submits(dialect: str, mode: str, customers: list[Customer], body: str) -> list[LoadRequest]:
    return [
        LoadRequest(
            method="POST",
            path=SUBMIT_PATHS[dialect],
            headers=_auth(customer.test_key if mode == "test" else customer.live_key),
            body=body,
        )
        for customer in customers
    ]


async def add_ftmvai_customers(database_url: str, first: int, count: int) -> list[Customer]:
    """``count`` more paid FtmvAI accounts (numbered from ``first``) with a live and a test key,
    minted as ``make_world`` mints them."""
    database = Database(database_url)
    await database.start()
    ledger = LedgerService(database)
    customers: list[Customer] = []
    try:
        async with database.transaction():
            for number in range(count):
                account = await ledger.open_account(
                    name=f"Bench ftmvai {first + number}", dialect="ftmvai", plan="paid", credits=CREDITS
                )
                live = await ledger.mint_key(account.id, mode="live", name="bench live")
                test = await ledger.mint_key(account.id, mode="test", name="bench test")
                customers.append(
                    Customer(account_id=account.id, live_key=live.plaintext, test_key=test.plaintext)
                )
    finally:
        await database.close()
    return customers
