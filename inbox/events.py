"""Live events for agents' sockets, sent only after the database commit.

A socket never announces a row that rolled back. Consumers (live chat issue) join one
group per inbox the policy lets them see, and re-check access per event.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def inbox_group(inbox_id: int) -> str:
    return f"inbox.{inbox_id}"


def publish_after_commit(*, inbox_id: int, event: str, payload: dict[str, Any]) -> None:
    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(
                inbox_group(inbox_id),
                {"type": "inbox.event", "event": event, "inbox_id": inbox_id, **payload},
            )
        except Exception:
            # A live update is a convenience; the row is committed and pages show it on
            # their next load. Never fail the write because a socket broker hiccupped.
            logger.warning("live event %s for inbox %s not delivered", event, inbox_id, exc_info=True)

    transaction.on_commit(send)
