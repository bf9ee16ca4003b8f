"""Replay a documented sample delivery (docs/webhook-samples/), signed as the provider
signs it, against a running server: `make run`, then

    manage.py replay_webhook <channel id> --text "Where is my parcel?"

The channel's secret is read from the database (the command runs beside the server), so
the delivery passes the same verification a real one does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_app.webhooks import selectors
from channels_app.webhooks.contract import SampleUnavailable
from channels_app.webhooks.registry import PROVIDERS

SAMPLES = Path(settings.BASE_DIR) / "docs" / "webhook-samples"


class Command(BaseCommand):
    help = "POST a signed sample delivery for a channel to a running server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel_id", type=int)
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The running server.")
        parser.add_argument("--text", default="Hello, is anybody there?")
        parser.add_argument("--sender", help="The customer's handle (phone number, chat id, PSID).")
        parser.add_argument("--name", default="Sample Customer")
        parser.add_argument("--message-id", help="Reuse an id to see a replay deduplicated.")
        parser.add_argument(
            "--sample",
            help="whatsapp-text (default for WhatsApp), whatsapp-status, twilio-sms (default for Twilio), "
            "twilio-voice; Telegram, Messenger and Instagram have one each.",
        )
        parser.add_argument(
            "--status", default="delivered", help="For whatsapp-status: sent, delivered, read, failed."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        provider = PROVIDERS.get(selectors.channel_provider(options["channel_id"]) or "")
        if provider is None:
            raise CommandError(f"No webhook channel {options['channel_id']}.")
        channel = provider.model.objects.select_related("inbox").get(pk=options["channel_id"])
        try:
            sample = options["sample"] or provider.sample_default(channel)
        except SampleUnavailable as exc:
            raise CommandError(str(exc)) from None
        template_path = SAMPLES / f"{sample}.json"
        if not template_path.is_file():
            raise CommandError(f"No sample {sample!r} in {SAMPLES}.")
        now = int(time.time())
        values = {
            "timestamp": str(now),
            "timestamp_ms": str(now * 1000),
            "text": options["text"],
            "name": options["name"],
            "status": options["status"],
            "message_id": options["message_id"] or "",
            "sender": options["sender"] or "",
        }
        try:
            signed = provider.sample_signed(channel, sample, template_path.read_text(), values)
        except SampleUnavailable as exc:
            raise CommandError(str(exc)) from None
        path, headers, body = signed.path, signed.headers, signed.body
        response = httpx.post(options["url"].rstrip("/") + path, content=body, headers=headers, timeout=10)
        self.stdout.write(f"POST {path} → {response.status_code} {response.text[:200]}")
        if response.status_code >= 400:
            raise CommandError("The server refused the delivery.")
