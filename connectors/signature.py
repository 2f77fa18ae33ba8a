"""Zendesk webhook signatures: base64(HMAC-SHA256(key = secret as text, msg = timestamp + body))."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime

from connectors import exceptions


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def parse_timestamp(value: str) -> datetime:
    """Zendesk sends ISO 8601 (``2026-11-21T23:00:00Z``); plain epoch seconds are accepted too."""
    value = value.strip()
    try:
        if value.isascii() and value.isdigit():
            return datetime.fromtimestamp(int(value), tz=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise exceptions.StaleTimestamp(f"unreadable signature timestamp {value[:40]!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def verify(
    secrets: Iterable[str],
    *,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    now: datetime,
    tolerance_s: int,
) -> None:
    """Raise unless some current secret signed ``timestamp + body`` within the window."""
    if not signature or not timestamp:
        raise exceptions.SignatureMismatch(
            "missing X-Zendesk-Webhook-Signature or X-Zendesk-Webhook-Signature-Timestamp"
        )
    skew = abs((now - parse_timestamp(timestamp)).total_seconds())
    if skew > tolerance_s:
        raise exceptions.StaleTimestamp(
            f"signature timestamp is {int(skew)} s away from now (limit {tolerance_s} s)"
        )
    given = signature.encode("utf-8", "surrogatepass")  # compare_digest refuses non-ASCII text
    if not any(hmac.compare_digest(sign(s, timestamp, body).encode(), given) for s in secrets):
        raise exceptions.SignatureMismatch("signature does not match the body")
