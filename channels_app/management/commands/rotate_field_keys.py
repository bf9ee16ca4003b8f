"""Re-encrypt stored channel secrets under the newest FIELD_ENCRYPTION_KEYS key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.sso import services as sso_services
from channels_app.email import services as email_services
from channels_app.webhooks import services as webhook_services


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        count = email_services.channel_secrets_rotate() + webhook_services.channel_secrets_rotate()
        self.stdout.write(f"{count} channel(s) re-encrypted under the newest key.")
        providers = sso_services.client_secrets_rotate()
        self.stdout.write(f"{providers} identity provider secret(s) re-encrypted under the newest key.")
