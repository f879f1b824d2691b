"""The bare ceilings: the least a route of each kind can cost on this machine, same server as the gateway.

One Litestar app with four routes, each the bare minimum of what a gateway route of that kind
does, and nothing else (no auth, no limits, no logging):

* ``GET /bare``: answer a small JSON object;
* ``POST /decode``: decode a submit-sized JSON body into a ``msgspec.Struct`` and answer;
* ``GET /pk/{id}``: one asyncpg primary-key select of a ``jobs`` row, answered as JSON (a poll's floor);
* ``POST /debit/{account}``: one debit transaction: lock a balance row, append a ledger row,
  update the balance (a paid submit's floor);
* ``POST /store-debit/{account}``: decode a submit body, base64-decode its two images, PUT both
  to S3 side by side (aiohttp, signed like the gateway's uploads), then the debit transaction:
  the floor of a submit that keeps its inputs, as both dialects' submits must (a FtmvAI order
  shows them, test keys included). Not a target's ceiling; it shows how much of the gap to the
  debit route is the storage every submit pays (the S3 server's CPU included, on the same cores).

It is served by uvicorn with :data:`SERVER_OPTIONS`, the options ``tryon-gateway serve`` passes
(loop and HTTP implementation chosen the same way), one process, so a ratio gateway/ceiling
compares route work only. Its pool has the gateway's size. Run as its own process::

    python -m bench.ceilings --port 8100 --database-url postgresql://…
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import uvicorn
import yarl
from litestar import Litestar, Request, get, post
from litestar.datastructures import State

from bench import loadgen
from bench.loadgen import LoadRequest, LoadResult, LoadSpec
from bench.processes import ROOT, Child, free_port, wait_http
from gateway import cli as gateway_cli
from storage.signing import sign_upload

#: what ``tryon-gateway serve`` gives uvicorn besides the app, host and port (gateway/cli.py): the same
#: HTTP parser and event loop ("auto", uvicorn's own choice, if the gateway stops naming them)
SERVER_OPTIONS: dict[str, Any] = {
    "log_config": None,
    "access_log": False,
    "timeout_graceful_shutdown": 10,
    "http": getattr(gateway_cli, "SERVER_HTTP", "auto"),
    "loop": getattr(gateway_cli, "SERVER_LOOP", "auto"),
}
POOL_SIZE = (1, 10)  # ledger.database.Database's default, which the gateway uses
DEBIT_ACCOUNTS = 1000

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS bench_balances (
           id bigint PRIMARY KEY, balance bigint NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS bench_entries (
           id bigserial PRIMARY KEY, account bigint NOT NULL, amount bigint NOT NULL,
           balance_after bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())""",
    f"""INSERT INTO bench_balances (id, balance)
        SELECT i, 1000000000 FROM generate_series(1, {DEBIT_ACCOUNTS}) i ON CONFLICT DO NOTHING""",
]


class SubmitBody(msgspec.Struct, kw_only=True):
    """The shape of a submit: images, options, free fields."""

    person_image_b64: str | None = None
    garment_images_b64: list[str] = []
    person_image: str | None = None
    clothing_image: str | None = None
    output_size: str | None = None
    options: dict[str, Any] | None = None
    wait: bool | None = None
    metadata: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(SubmitBody)


@get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok"}


@post("/decode", status_code=200)
async def decode(request: Request[Any, Any, Any]) -> dict[str, Any]:
    body = _decoder.decode(await request.body())
    return {"garments": len(body.garment_images_b64) + (1 if body.clothing_image else 0), "wait": body.wait}


@get("/pk/{job_id:int}")
async def pk_select(state: State, job_id: int) -> dict[str, Any]:
    pool: asyncpg.Pool = state.pool
    row = await pool.fetchrow(
        "SELECT id, public_id, status, progress, created_at, completed_at FROM jobs WHERE id = $1", job_id
    )
    if row is None:
        return {"found": False}
    return {
        "id": row["id"],
        "job_id": row["public_id"],
        "status": row["status"],
        "progress": row["progress"],
        "created_at": row["created_at"].isoformat(),
        "completed_at": row["completed_at"].isoformat() if row["completed_at"] else None,
    }


@post("/debit/{account:int}", status_code=200)
async def debit(state: State, account: int) -> dict[str, int]:
    return {"balance": await _debit(state.pool, account)}


class BareS3:
    """Signed PUTs to one bucket over one aiohttp session: the least an upload costs here."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, region: str) -> None:
        url = yarl.URL(endpoint)
        self._scheme, self._host, self._bucket = url.scheme, url.raw_authority, bucket
        self._keys = (access_key, secret_key, region)
        self.session: aiohttp.ClientSession | None = None

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        assert self.session is not None
        path = f"/{self._bucket}/{key}"
        access_key, secret_key, region = self._keys
        headers = sign_upload(
            host=self._host,
            path=path,
            content_type=content_type,
            content_length=len(data),
            payload_sha256=hashlib.sha256(data).hexdigest(),
            access_key=access_key,
            secret_key=secret_key,
            region=region,
        )
        url = yarl.URL.build(scheme=self._scheme, authority=self._host, path=path, encoded=True)
        async with self.session.put(url, data=data, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"S3 PUT {key}: {response.status}")


@post("/store-debit/{account:int}", status_code=200)
async def store_debit(request: Request[Any, Any, Any], state: State, account: int) -> dict[str, int]:
    body = _decoder.decode(await request.body())
    images = [base64.b64decode(body.person_image_b64 or ""), *map(base64.b64decode, body.garment_images_b64)]
    prefix = f"bench-ceiling/{secrets.token_hex(8)}"
    s3: BareS3 = state.s3
    await asyncio.gather(*(s3.put(f"{prefix}/{n}.png", data, "image/png") for n, data in enumerate(images)))
    return {"balance": await _debit(state.pool, account)}


async def _debit(pool: asyncpg.Pool, account: int) -> int:
    async with pool.acquire() as connection, connection.transaction():
        balance = await connection.fetchval(
            "SELECT balance FROM bench_balances WHERE id = $1 FOR UPDATE", account
        )
        after = balance - 1
        await connection.execute(
            "INSERT INTO bench_entries (account, amount, balance_after) VALUES ($1, -1, $2)", account, after
        )
        await connection.execute("UPDATE bench_balances SET balance = $2 WHERE id = $1", account, after)
    return int(after)


def create_app(database_url: str) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(database_url, min_size=POOL_SIZE[0], max_size=POOL_SIZE[1])
        async with pool.acquire() as connection:
            for statement in SCHEMA:
                await connection.execute(statement)
        app.state.pool = pool
        s3 = BareS3(
            os.environ["TRYON_S3_ENDPOINT"],
            os.environ["TRYON_S3_ACCESS_KEY"],
            os.environ["TRYON_S3_SECRET_KEY"],
            os.environ["TRYON_S3_BUCKET"],
            os.environ.get("TRYON_S3_REGION", "us-east-1"),
        )
        app.state.s3 = s3
        try:
            async with aiohttp.ClientSession() as s3.session:
                yield
        finally:
            await pool.close()

    return Litestar([bare, decode, pk_select, debit, store_debit], lifespan=[lifespan])


class Shape(msgspec.Struct, frozen=True, kw_only=True):
    """How hard and how long each HTTP measurement runs."""

    connections: int
    duration: float
    warmup: float

    def spec(self, base: str, requests: list[LoadRequest]) -> LoadSpec:
        return LoadSpec(
            base=base,
            requests=requests,
            connections=self.connections,
            duration=self.duration,
            warmup=self.warmup,
        )


def measure(
    database_url: str, log_dir: Path, shape: Shape, *, job_id: int, submit_body: str, env: dict[str, str]
) -> dict[str, LoadResult]:
    """Serve the ceilings in their own process and load each route in turn (``env``: the gateway's,
    for its ``TRYON_S3_*``)."""
    port = free_port()
    args = [sys.executable, "-m", "bench.ceilings", "--port", str(port), "--database-url", database_url]
    child = Child("ceilings", args, {**env, "PYTHONPATH": str(ROOT)}, log_dir / "ceilings.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(child, base + "/bare")
        debits = [LoadRequest(method="POST", path=f"/debit/{n}") for n in range(1, DEBIT_ACCOUNTS + 1)]
        return {
            "bare_get": loadgen.run(shape.spec(base, [LoadRequest(method="GET", path="/bare")])),
            "decode_post": loadgen.run(
                shape.spec(base, [LoadRequest(method="POST", path="/decode", body=submit_body)])
            ),
            "pk_select": loadgen.run(shape.spec(base, [LoadRequest(method="GET", path=f"/pk/{job_id}")])),
            "debit_tx": loadgen.run(shape.spec(base, debits)),
            "store_debit": loadgen.run(
                shape.spec(
                    base,
                    [
                        LoadRequest(method="POST", path=f"/store-debit/{n}", body=submit_body)
                        for n in range(1, DEBIT_ACCOUNTS + 1)
                    ],
                )
            ),
        }
    finally:
        child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="serve the bare ceiling routes")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.database_url), host="127.0.0.1", port=args.port, log_level="warning", **SERVER_OPTIONS
    )


if __name__ == "__main__":
    main()
