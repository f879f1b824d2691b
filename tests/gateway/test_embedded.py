"""The embedded servers, run for real from their wheels (slow: about a minute, mostly weed's 15 s stop)."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio
from minio import Minio
from minio.error import S3Error

from gateway.embedded import EmbeddedServices, ServiceEndpoints, free_port, start_seaweed_s3


def _minio(endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1") -> Minio:
    host = endpoint.removeprefix("http://")
    return Minio(host, access_key=access_key, secret_key=secret_key, region=region, secure=False)


def _client(endpoints: ServiceEndpoints) -> Minio:
    e = endpoints
    return _minio(e.s3_endpoint, e.s3_access_key, e.s3_secret_key, e.s3_region)


def _put_object(endpoints: ServiceEndpoints) -> None:
    client = _client(endpoints)
    client.make_bucket("tryon")
    client.put_object("tryon", "results/1.png", io.BytesIO(b"png bytes"), length=9)


def _get_object(endpoints: ServiceEndpoints) -> bytes:
    response = _client(endpoints).get_object("tryon", "results/1.png")
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def _pids(data_dir: Path) -> dict[str, int | None]:
    state = json.loads((data_dir / "services.json").read_text())
    return {name: state[f"{name}_pid"] for name in ("postgres", "redis", "s3")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


async def _write_data(endpoints: ServiceEndpoints) -> None:
    conn = await asyncpg.connect(endpoints.database_url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "tryon"
        await conn.execute("CREATE TABLE garments (id int PRIMARY KEY, name text NOT NULL)")
        await conn.execute("INSERT INTO garments VALUES (1, 'trench coat')")
    finally:
        await conn.close()
    client = redis.asyncio.from_url(endpoints.redis_url)
    try:
        await client.set("job:1", "done")
        assert await client.get("job:1") == b"done"
    finally:
        await client.aclose()
    await asyncio.to_thread(_put_object, endpoints)
    assert await asyncio.to_thread(_get_object, endpoints) == b"png bytes"


async def _read_data(endpoints: ServiceEndpoints) -> None:
    conn = await asyncpg.connect(endpoints.database_url)
    try:
        assert await conn.fetchval("SELECT name FROM garments WHERE id = 1") == "trench coat"
    finally:
        await conn.close()
    client = redis.asyncio.from_url(endpoints.redis_url)
    try:
        assert await client.get("job:1") == b"done"  # append-only file
    finally:
        await client.aclose()
    assert await asyncio.to_thread(_get_object, endpoints) == b"png bytes"


async def test_embedded_services_lifecycle(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    first = EmbeddedServices(data_dir)
    try:
        endpoints = await asyncio.to_thread(first.start)
        for url in (endpoints.database_url, endpoints.redis_url, endpoints.s3_endpoint):
            assert "127.0.0.1:" in url
        assert ":5432/" not in endpoints.database_url and ":6379/" not in endpoints.redis_url
        await _write_data(endpoints)
        pids = _pids(data_dir)
        assert all(pid is not None and _alive(pid) for pid in pids.values())

        # The next `tryon-gateway dev` finds the running servers again instead of starting new ones.
        assert await asyncio.to_thread(EmbeddedServices(data_dir).start) == endpoints
        assert _pids(data_dir) == pids
    finally:
        await asyncio.to_thread(first.stop)
    assert not any(pid is not None and _alive(pid) for pid in pids.values())
    assert _pids(data_dir) == {"postgres": None, "redis": None, "s3": None}

    second = EmbeddedServices(data_dir)
    try:
        restarted = await asyncio.to_thread(second.start)
        assert restarted.s3_access_key == endpoints.s3_access_key
        assert restarted.s3_secret_key == endpoints.s3_secret_key
        await _read_data(restarted)
        new_pids = _pids(data_dir)
        assert set(new_pids.values()).isdisjoint(pids.values())
    finally:
        await asyncio.to_thread(second.stop)
    assert not any(pid is not None and _alive(pid) for pid in new_pids.values())
    assert _pids(data_dir) == {"postgres": None, "redis": None, "s3": None}


def test_start_seaweed_s3(tmp_path: Path) -> None:
    port = free_port()
    weed = start_seaweed_s3(
        tmp_path / "s3",
        s3_port=port,
        access_key="test-key",
        secret_key="test-secret",
        log_path=tmp_path / "weed.log",
    )
    try:
        assert weed.endpoint == f"http://127.0.0.1:{port}"
        client = _minio(weed.endpoint, "test-key", "test-secret")
        client.make_bucket("images")
        client.put_object("images", "a.txt", io.BytesIO(b"hello"), length=5)
        response = client.get_object("images", "a.txt")
        try:
            assert response.read() == b"hello"
        finally:
            response.close()
            response.release_conn()
        with pytest.raises(S3Error):
            _minio(weed.endpoint, "test-key", "wrong-secret").list_buckets()
    finally:
        weed.stop()
    assert weed.process.poll() is not None
    assert not [path for p in weed.ports.all() for path in Path("/tmp").glob(f"seaweedfs-*-{p}.sock")]
