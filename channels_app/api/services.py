"""Writes for the API channel: an integration's pushed message goes into the same inbound
store as every provider's delivery, and on through the same processing."""

from __future__ import annotations

from typing import Any

from channels_app.api.models import ApiChannel
from channels_app.api.provider import pushed_delivery
from channels_app.webhooks.models import InboundEvent
from channels_app.webhooks.services import delivery_store


def api_message_accept(*, channel: ApiChannel, message: dict[str, Any]) -> bool:
    """Store a validated push once (the caller has checked the token may write to the
    channel's inbox); False when the integration's message id was pushed before."""
    delivery, body = pushed_delivery(message["message_id"], message)
    # With no fingerprint the store re-checks nothing of the channel: never None here.
    return bool(delivery_store(channel, InboundEvent.Endpoint.API, delivery, body, verified=True))
