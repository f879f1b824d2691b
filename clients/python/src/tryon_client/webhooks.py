"""Verify FitInView webhooks (see the gateway's docs/webhooks.md).

``X-FitInView-Signature: sha256=<hex>`` (v1) is the HMAC-SHA256 of the raw body keyed by the
key's ``whsec_…`` secret. ``X-FitInView-Signature-V2: t=<unix>,v1=<hex>`` (v2) signs
``"{t}." + body``, so a receiver can also refuse replays: :func:`verify` checks every signature
present, requires ``t`` to be within ``tolerance`` seconds of now (and to equal
``X-FitInView-Timestamp`` when that is sent), and returns the decoded event. Pass the RAW body
bytes, exactly as received — not re-serialised JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Optional, Union

import msgspec

from tryon_client.errors import WebhookVerificationError

__all__ = ["DEFAULT_TOLERANCE", "WebhookEvent", "sign", "verify"]

DEFAULT_TOLERANCE = 300.0
V1_HEADER = "x-fitinview-signature"
V2_HEADER = "x-fitinview-signature-v2"
TIMESTAMP_HEADER = "x-fitinview-timestamp"


class WebhookEvent(msgspec.Struct, kw_only=True):
    """The body of a ``tryon.completed`` event."""

    event: str
    job_id: str
    status: str
    result_url: Optional[str] = None
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    duration_ms: Optional[int] = None
    completed_at: Optional[str] = None


def _hmac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: Optional[int] = None) -> dict[str, str]:
    """The headers the gateway would send for ``body`` (for receivers' own tests)."""
    t = int(time.time()) if timestamp is None else timestamp
    return {
        "X-FitInView-Signature": "sha256=" + _hmac(secret, body),
        "X-FitInView-Signature-V2": f"t={t},v1=" + _hmac(secret, f"{t}.".encode() + body),
        "X-FitInView-Timestamp": str(t),
    }


def verify(
    body: Union[bytes, str],
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    require_v2: bool = False,
    now: Optional[float] = None,
) -> WebhookEvent:
    """Check a delivery's signatures and freshness; return the event or raise
    :class:`~tryon_client.errors.WebhookVerificationError`.

    Every signature present must match. With a v2 signature its timestamp must be within
    ``tolerance`` seconds of ``now``; a delivery carrying only v1 (a sender that predates v2)
    is accepted unless ``require_v2`` — v1 alone cannot tell a replay from a delivery."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    lowered = {name.lower(): value for name, value in headers.items()}
    v1 = lowered.get(V1_HEADER)
    v2 = lowered.get(V2_HEADER)
    if v1 is None and v2 is None:
        raise WebhookVerificationError("no X-FitInView-Signature header")
    if v1 is not None and not hmac.compare_digest("sha256=" + _hmac(secret, raw), v1.strip()):
        raise WebhookVerificationError("X-FitInView-Signature does not match the body")
    if v2 is None:
        if require_v2:
            raise WebhookVerificationError("no X-FitInView-Signature-V2 header")
    else:
        try:
            parts = dict(item.strip().split("=", 1) for item in v2.split(","))
            t = int(parts["t"])
            signature = parts["v1"]
        except (KeyError, ValueError):
            raise WebhookVerificationError("X-FitInView-Signature-V2 is malformed") from None
        if not hmac.compare_digest(_hmac(secret, f"{t}.".encode() + raw), signature):
            raise WebhookVerificationError("X-FitInView-Signature-V2 does not match the body")
        stamp = lowered.get(TIMESTAMP_HEADER)
        if stamp is not None and stamp.strip() != str(t):
            raise WebhookVerificationError("X-FitInView-Timestamp differs from the signed timestamp")
        age = (time.time() if now is None else now) - t
        if abs(age) > tolerance:
            raise WebhookVerificationError(
                f"signature timestamp is {age:.0f} s off (tolerance {tolerance:.0f} s)"
            )
    try:
        return msgspec.json.decode(raw, type=WebhookEvent)
    except msgspec.DecodeError as exc:
        raise WebhookVerificationError(f"signed body is not a webhook event: {exc}") from exc
