"""Presigned GET links (AWS Signature Version 4, query string), signed in a few microseconds.

minio's ``presigned_get_object`` took about half a millisecond per link — the largest single cost
of a poll, and of answering thousands of held sync waits at once. Signing is a fixed recipe
(``docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html``): the per-day signing
key is derived once and kept, leaving one SHA-256 and one HMAC per link. The result is the same
string minio signs for the same instant (``tests/storage/test_signing.py`` checks it), so any S3
that accepts minio's links accepts these.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"


@functools.lru_cache(maxsize=8)
def _signing_key(secret_key: str, day: str, region: str) -> bytes:
    key = hmac.new(("AWS4" + secret_key).encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class LinkSigner:
    """Signs path-style GET links to objects of ``bucket`` on the S3 at ``base_url``."""

    def __init__(self, *, base_url: str, bucket: str, access_key: str, secret_key: str, region: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"S3 URL must be an http(s) URL, not {base_url!r}")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc
        self._bucket_path = "/" + quote(bucket, safe="")
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region

    def sign(self, key: str, ttl_seconds: int, *, now: datetime | None = None) -> str:
        """A link to object ``key`` valid for ``ttl_seconds`` from ``now`` (default: this second)."""
        if not key or not 1 <= ttl_seconds <= 604_800:  # S3 refuses links valid for over 7 days
            raise ValueError(f"cannot sign {key!r} for {ttl_seconds} s")
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        scope = f"{day}/{self._region}/s3/aws4_request"
        path = f"{self._bucket_path}/{quote(key, safe='/~')}"
        query = (
            f"X-Amz-Algorithm={ALGORITHM}"
            f"&X-Amz-Credential={quote(f'{self._access_key}/{scope}', safe='~')}"
            f"&X-Amz-Date={stamp}&X-Amz-Expires={ttl_seconds}&X-Amz-SignedHeaders=host"
        )
        canonical = f"GET\n{path}\n{query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signing_key = _signing_key(self._secret_key, day, self._region)
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"


def sign_upload(
    *,
    host: str,
    path: str,
    content_type: str,
    content_length: int,
    payload_sha256: str,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers of a signed ``PUT`` of an object at ``path`` (already URI-encoded) on ``host``.

    The same headers, signed the same way, as minio's ``sign_v4_s3`` gives for them
    (``tests/storage/test_signing.py`` checks it), in a tenth of its time: the canonical headers are
    a fixed, already sorted set and the day's signing key is kept. Every input upload pays this.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    scope = f"{day}/{region}/s3/aws4_request"
    signed = "content-length;content-type;host;x-amz-content-sha256;x-amz-date"
    canonical = (
        f"PUT\n{path}\n\ncontent-length:{content_length}\ncontent-type:{content_type}\nhost:{host}\n"
        f"x-amz-content-sha256:{payload_sha256}\nx-amz-date:{stamp}\n\n{signed}\n{payload_sha256}"
    )
    to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(_signing_key(secret_key, day, region), to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Host": host,
        "Content-Type": content_type,
        "Content-Length": str(content_length),
        "x-amz-content-sha256": payload_sha256,
        "x-amz-date": stamp,
        "Authorization": (
            f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        ),
    }
