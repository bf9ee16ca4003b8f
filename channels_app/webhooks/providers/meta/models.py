"""A WhatsApp number, Messenger page or Instagram account through Meta's Graph API."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.db import models

from channels_app.common.crypto import EncryptedTextField
from channels_app.webhooks.models import Provider, SocialChannel
from inbox.models import ChannelKind


class MetaKind(models.TextChoices):
    WHATSAPP = ChannelKind.WHATSAPP.value, "WhatsApp Cloud API"
    MESSENGER = ChannelKind.MESSENGER.value, "Facebook Messenger"
    INSTAGRAM = ChannelKind.INSTAGRAM.value, "Instagram"


class MetaChannel(SocialChannel):
    kind = models.CharField(max_length=10, choices=MetaKind.choices)
    account_id = models.CharField(
        max_length=64,
        validators=[RegexValidator(r"^[0-9]{1,64}$", "Meta ids are digits.")],
        help_text="WhatsApp: the phone number id. Messenger: the page id. Instagram: the account id.",
    )
    app_secret = EncryptedTextField(help_text="Signs every delivery (X-Hub-Signature-256).")
    verify_token = EncryptedTextField(help_text="Your choice; typed into Meta's webhook settings too.")
    access_token = EncryptedTextField(help_text="Sends replies and fetches media.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "account_id"], name="metachannel_unique_account")
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.provider = Provider.META
        super().save(*args, **kwargs)

    def allowed_inbox_kinds(self) -> set[str]:
        return {self.kind}
