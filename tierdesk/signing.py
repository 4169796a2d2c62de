"""HMAC-SHA256 request signatures, the same scheme in both directions.

``X-Tierdesk-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``

Binding the timestamp into the MAC and refusing old timestamps stops a
captured request from being replayed later; the message id's idempotency
stops a replay inside the window from doing anything twice.
"""

from __future__ import annotations

import hashlib
import hmac

from tierdesk.errors import Unauthenticated

HEADER = "X-Tierdesk-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str | None, body: bytes, now: float, tolerance: float) -> None:
    if not header:
        raise Unauthenticated(f"this channel requires signed requests ({HEADER})", code="signature_required")
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        raise Unauthenticated(f"malformed {HEADER}; expected t=<unix>,v1=<hex>", code="bad_signature") from None
    if abs(now - timestamp) > tolerance:
        raise Unauthenticated("signature timestamp outside the allowed window", code="stale_signature")
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        raise Unauthenticated("signature does not match the body", code="bad_signature")
