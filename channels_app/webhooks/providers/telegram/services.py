"""Writes for Telegram's own ways: pull mode (a getUpdates poll chain per channel, holding
a lease) and registering or removing the webhook."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from channels_app.common.provider_http import ProviderError
from channels_app.webhooks import services as webhook_services
from channels_app.webhooks.items import Malformed
from channels_app.webhooks.models import InboundEvent
from channels_app.webhooks.providers.telegram import client, selectors
from channels_app.webhooks.providers.telegram.models import TelegramChannel, TelegramMode

Endpoint = InboundEvent.Endpoint


def telegram_polls_start() -> list[tuple[int, str]]:
    """Claim every pull-mode channel without a live poll chain; returns (channel, lease)."""
    now = timezone.now()
    started: list[tuple[int, str]] = []
    for channel_id in selectors.telegram_channels_to_poll(now):
        lease = secrets.token_hex(16)
        # Claimed only if still free: two beat ticks racing start one chain.
        claimed = (
            TelegramChannel.objects.filter(pk=channel_id)
            .filter(Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=now))
            .update(poll_lease=lease, poll_lease_until=now + _lease_length())
        )
        if claimed:
            started.append((channel_id, lease))
    return started


def _lease_length() -> timedelta:
    return timedelta(seconds=settings.TELEGRAM_POLL_TIMEOUT_SECONDS + 60)


@dataclass(frozen=True)
class PollResult:
    stored: int
    # The chain still owns the channel and it is still in pull mode: poll again.
    go_on: bool


def telegram_poll(*, channel_id: int, lease: str) -> PollResult:
    """One getUpdates round from the stored offset. The updates and the new offset are
    committed together, so a worker killed at any point resumes from the right offset:
    before the commit Telegram still holds the updates (it hands them out until a higher
    offset confirms them), after it they are stored (and a replay is deduplicated).
    Raises ProviderError."""
    channel = (
        TelegramChannel.objects.select_related("inbox")
        .filter(pk=channel_id, enabled=True, mode=TelegramMode.PULL, poll_lease=lease)
        .first()
    )
    if channel is None:
        return PollResult(stored=0, go_on=False)
    try:
        updates = client.updates_get(channel, channel.update_offset, settings.TELEGRAM_POLL_TIMEOUT_SECONDS)
    except ProviderError as exc:
        TelegramChannel.objects.filter(pk=channel_id).update(last_error=str(exc)[:500])
        if not exc.transient:
            TelegramChannel.objects.filter(pk=channel_id, poll_lease=lease).update(
                poll_lease="", poll_lease_until=None
            )
        raise
    rows = []
    highest = channel.update_offset - 1
    for update in updates:
        try:
            delivery = client.update_check(update)
        except Malformed:
            continue
        highest = max(highest, update["update_id"])
        body = json.dumps(update, separators=(",", ":")).encode()
        rows.append(
            InboundEvent(
                channel=channel,
                endpoint=Endpoint.TELEGRAM_POLL,
                event_key=delivery.event_key(body),
                body=body,
            )
        )
    with transaction.atomic():
        owner = TelegramChannel.objects.select_for_update().filter(pk=channel_id, poll_lease=lease).first()
        if owner is None:
            return PollResult(stored=0, go_on=False)
        InboundEvent.objects.bulk_create(rows, ignore_conflicts=True)
        TelegramChannel.objects.filter(pk=channel_id).update(
            # Never backwards, even if another chain got further meanwhile.
            update_offset=Greatest(F("update_offset"), highest + 1),
            poll_lease_until=timezone.now() + _lease_length(),
            last_polled_at=timezone.now(),
            last_error="",
        )
        if rows:
            transaction.on_commit(lambda: webhook_services.process_later(channel_id))
    return PollResult(stored=len(rows), go_on=True)


def telegram_poll_release(*, channel_id: int, lease: str) -> None:
    TelegramChannel.objects.filter(pk=channel_id, poll_lease=lease).update(
        poll_lease="", poll_lease_until=None
    )


def telegram_webhook_register(*, channel: TelegramChannel) -> str:
    """Point Telegram at our webhook with the channel's secret token and switch to push.
    Raises ProviderError; returns the URL registered."""
    if not channel.public_base_url.startswith("https://"):
        raise ProviderError("Telegram delivers to https URLs only: set the public base URL.", transient=False)
    url = channel.public_base_url.rstrip("/") + channel.webhook_path()
    client.webhook_set(channel, url)
    TelegramChannel.objects.filter(pk=channel.pk).update(
        mode=TelegramMode.PUSH,
        webhook_registered_at=timezone.now(),
        poll_lease="",
        poll_lease_until=None,
        last_error="",
    )
    return url


def telegram_webhook_remove(*, channel: TelegramChannel) -> None:
    """Stop pushes and switch to pull mode (getUpdates works only without a webhook)."""
    client.webhook_delete(channel)
    TelegramChannel.objects.filter(pk=channel.pk).update(
        mode=TelegramMode.PULL, webhook_registered_at=None, last_error=""
    )
