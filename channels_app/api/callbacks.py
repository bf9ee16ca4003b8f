"""Agents' replies to the integration: a JSON POST to its callback URL, signed like Stripe
and Slack sign theirs, so the integration can prove it came from us and is fresh.

    X-Portcullis-Timestamp: <unix seconds>
    X-Portcullis-Signature: v1=<hex HMAC-SHA256 under the secret of "<timestamp>." + raw body>
    Idempotency-Key: <the same for every try of one reply>

The integration recomputes the HMAC over the raw body, compares in constant time, and
refuses a timestamp older than REPLAY_WINDOW_SECONDS: a captured request cannot be replayed
later. A retried reply carries the same Idempotency-Key, so it is shown to the customer once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping

from channels_app.common import provider_http
from channels_app.common.provider_http import ProviderError
from channels_app.webhooks.items import obj, text_of

TIMESTAMP_HEADER = "X-Portcullis-Timestamp"
SIGNATURE_HEADER = "X-Portcullis-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAY_WINDOW_SECONDS = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def signature_problem(
    secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> str | None:
    """What an integration checks (and our tests' stand-in integration does): why this
    request is not a fresh one of ours, or None."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    if not timestamp.isdigit():
        return f"missing {TIMESTAMP_HEADER}"
    if abs((now if now is not None else time.time()) - int(timestamp)) > REPLAY_WINDOW_SECONDS:
        return f"{TIMESTAMP_HEADER} is outside the {REPLAY_WINDOW_SECONDS}-second window"
    if not hmac.compare_digest(
        headers.get(SIGNATURE_HEADER, "").encode(), signature(secret, timestamp, body).encode()
    ):
        return f"{SIGNATURE_HEADER} does not match the body"
    return None


def reply_post(*, url: str, secret: str, recipient: str, text: str, idempotency_key: str) -> str:
    """POST a reply; returns the integration's id for it (its `id`, else our key). Raises
    ProviderError: transient for a timeout, 429 or 5xx."""
    body = json.dumps(
        {"event": "message.created", "id": idempotency_key, "recipient": {"id": recipient}, "text": text},
        separators=(",", ":"),
    ).encode()
    timestamp = str(int(time.time()))
    response = provider_http.request(
        "POST",
        url,
        headers={
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(secret, timestamp, body),
            IDEMPOTENCY_HEADER: idempotency_key,
        },
        content=body,
    )
    if response.status >= 400:
        raise ProviderError(
            f"The integration refused (HTTP {response.status})",
            transient=provider_http.status_transient(response.status),
            retry_after=provider_http.retry_after(response),
        )
    answer = obj(response.json()) if response.content else {}
    return text_of(answer.get("id"), 190) or idempotency_key
