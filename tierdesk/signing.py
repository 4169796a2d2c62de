"""HMAC-SHA256 request signatures, the same scheme in both directions.

``X-Tierdesk-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``

Binding the timestamp into the MAC and refusing old timestamps stops a
captured request from being replayed later; the message id's idempotency
stops a replay inside the window from doing anything twice.

While a channel's secret is being rotated both secrets are good: outbound
requests carry one ``v1=`` per secret (a receiver accepts the request if any
matches one it knows), and inbound requests may be signed with either.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from tierdesk.errors import Unauthenticated

HEADER = "X-Tierdesk-Signature"
# Strict, so that what reaches the arithmetic and the comparison is a
# timestamp of at most 12 digits and ASCII hex digests (a huge number or a
# non-ASCII digest made the check itself fail).
_FORMAT = re.compile(r"t=(?P<t>[0-9]{1,12})(?P<macs>(?:,v1=[0-9a-fA-F]{64}){1,4})")


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | Sequence[str], timestamp: int, body: bytes) -> str:
    secrets = [secret] if isinstance(secret, str) else list(secret)
    return f"t={timestamp}," + ",".join(f"v1={_mac(s, timestamp, body)}" for s in secrets)


def verify(secret: str | Sequence[str], header: str | None, body: bytes, now: float, tolerance: float) -> None:
    if not header:
        raise Unauthenticated(f"this channel requires signed requests ({HEADER})", code="signature_required")
    match = _FORMAT.fullmatch(header.strip())
    if match is None:
        raise Unauthenticated(f"malformed {HEADER}; expected t=<unix seconds>,v1=<64 hex digits>",
                              code="bad_signature")
    timestamp = int(match["t"])
    given = [m.lower() for m in match["macs"].split(",v1=")[1:]]
    if abs(now - timestamp) > tolerance:
        raise Unauthenticated("signature timestamp outside the allowed window", code="stale_signature")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [_mac(s, timestamp, body) for s in secrets if s]
    # Every pair is compared, so the time taken says nothing about which matched.
    matched = False
    for e in expected:
        for g in given:
            matched |= hmac.compare_digest(e, g)
    if not matched:
        raise Unauthenticated("signature does not match the body", code="bad_signature")
