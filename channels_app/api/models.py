"""An integration's channel: where its agents' replies are delivered, and the key that
signs them."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import models

from channels_app.common.crypto import EncryptedTextField
from channels_app.webhooks.models import Provider, SocialChannel, public_url_validator
from inbox.models import ChannelKind


def callback_secret_default() -> str:
    return secrets.token_urlsafe(32)


class ApiChannel(SocialChannel):
    callback_url = models.URLField(
        max_length=500,
        validators=[public_url_validator],
        help_text="The integration's endpoint for agents' replies: POSTed JSON, signed with the secret.",
    )
    callback_secret = EncryptedTextField(
        default=callback_secret_default,
        help_text="Signs every reply (X-Portcullis-Signature); give it to the integration.",
    )

    # The callback carries the customer's messages and the signature: never into the internal
    # network, by the same host allowlist as every other outbound connection.
    url_fields = ("public_base_url", "api_base_url", "callback_url")
    secret_url_fields = ("api_base_url", "callback_url")

    class Meta:
        verbose_name = "API channel"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.provider = Provider.API
        super().save(*args, **kwargs)

    def allowed_inbox_kinds(self) -> set[str]:
        return {ChannelKind.API}

    def messages_path(self) -> str:
        return f"/api/v1/channels/{self.pk}/messages"
