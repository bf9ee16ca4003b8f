"""Reads for the Telegram channels: which pull-mode channels need a poll chain."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from channels_app.webhooks.providers.telegram.models import TelegramChannel, TelegramMode
from inbox.models import ChannelKind


def telegram_channels_to_poll(now: datetime) -> list[int]:
    """Pull-mode channels without a live poll chain (never started, or its lease ran out)."""
    return list(
        TelegramChannel.objects.filter(
            enabled=True, mode=TelegramMode.PULL, inbox__channel_kind=ChannelKind.TELEGRAM
        )
        .filter(Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=now))
        .values_list("pk", flat=True)
    )
