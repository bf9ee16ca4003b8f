"""A Telegram bot feeding an inbox: pushed to our webhook, or pulled with getUpdates."""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from channels_app.common.crypto import EncryptedTextField
from channels_app.webhooks.models import Provider, SocialChannel
from inbox.models import ChannelKind


class TelegramMode(models.TextChoices):
    PUSH = "push", "Push: Telegram calls our webhook"
    PULL = "pull", "Pull: long-poll getUpdates (no public URL needed)"


class TelegramChannel(SocialChannel):
    bot_token = EncryptedTextField(help_text="From @BotFather.")
    # Telegram sends it back in X-Telegram-Bot-Api-Secret-Token; generated when empty.
    webhook_secret = EncryptedTextField(blank=True)
    mode = models.CharField(max_length=4, choices=TelegramMode.choices, default=TelegramMode.PUSH)
    # getUpdates offset: one more than the last update stored. Committed with the updates.
    update_offset = models.BigIntegerField(default=0)
    # The poll chain that owns this channel, and until when; a dead chain's lease runs out.
    poll_lease = models.CharField(max_length=32, blank=True)
    poll_lease_until = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    webhook_registered_at = models.DateTimeField(null=True, blank=True)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.provider = Provider.TELEGRAM
        if not self.webhook_secret:
            self.webhook_secret = secrets.token_urlsafe(48)
        super().save(*args, **kwargs)

    def allowed_inbox_kinds(self) -> set[str]:
        return {ChannelKind.TELEGRAM}

    def clean(self) -> None:
        super().clean()
        if self.webhook_secret and not _TELEGRAM_SECRET.match(self.webhook_secret):
            raise ValidationError({"webhook_secret": "1-256 characters: A-Z, a-z, 0-9, _ and - only."})


_TELEGRAM_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
