"""Signed download links are reused for a short window (signing cost a poll half a millisecond per
link), and every link handed out still opens the object and stays valid almost its whole TTL."""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import parse_qs, urlsplit

import aiohttp

from storage.objects import ObjectStore, StorageConfig
from tests.support import services


def _store(s3: services.S3Endpoint) -> ObjectStore:
    return ObjectStore(
        StorageConfig(
            endpoint=s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, bucket="tryon-test"
        )
    )


def _signed_at(url: str) -> str:
    return parse_qs(urlsplit(url).query)["X-Amz-Date"][0]


async def test_a_link_is_reused_within_its_window_then_signed_afresh(
    s3: services.S3Endpoint, http: aiohttp.ClientSession
) -> None:
    store = _store(s3)
    await store.ensure_bucket()
    key = f"tests/signed-links/{secrets.token_hex(6)}.txt"
    await store.put(key, b"hello", "text/plain")
    ttl = 24  # a reuse window of ttl / 24 = 1 s
    first = store.presigned_url(key, ttl)
    assert store.presigned_url(key, ttl) == first
    assert parse_qs(urlsplit(first).query)["X-Amz-Expires"] == [str(ttl)]
    other = store.presigned_url(key + ".other", ttl)
    assert other != first and key + ".other" in other

    await asyncio.sleep(1.2)
    second = store.presigned_url(key, ttl)
    assert second != first and _signed_at(second) > _signed_at(first)
    for url in (first, second):
        async with http.get(url) as response:
            assert (response.status, await response.read()) == (200, b"hello")

    # The window never exceeds an hour, so a link from the default 24 h TTL keeps >= 23 h.
    day = store.presigned_url(key, 86_400)
    assert store.presigned_url(key, 86_400) == day
    await store.delete(key)
