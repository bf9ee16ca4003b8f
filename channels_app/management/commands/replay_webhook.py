"""Replay a documented sample delivery (docs/webhook-samples/), signed as the provider
signs it, against a running server: `make run`, then

    manage.py replay_webhook <channel id> --text "Where is my parcel?"

The channel's secret is read from the database (the command runs beside the server), so
the delivery passes the same verification a real one does.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_app.models import MetaChannel, MetaKind, SocialChannel, TelegramChannel, TwilioChannel
from channels_app.providers import meta, telegram, twilio
from channels_app.social_selectors import CHANNEL_MODELS

SAMPLES = Path(settings.BASE_DIR) / "docs" / "webhook-samples"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _fill(template: str, values: dict[str, str]) -> bytes:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise CommandError(f"The sample needs a value for {name}.")
        return json.dumps(values[name])[1:-1]  # escaped for a JSON string (digits stay digits)

    return json.dumps(json.loads(_PLACEHOLDER.sub(value, template))).encode()


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
        channel = self._channel(options["channel_id"])
        sample = options["sample"] or self._default_sample(channel)
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
        path, headers, body = self._signed(channel, sample, template_path.read_text(), values)
        response = httpx.post(options["url"].rstrip("/") + path, content=body, headers=headers, timeout=10)
        self.stdout.write(f"POST {path} → {response.status_code} {response.text[:200]}")
        if response.status_code >= 400:
            raise CommandError("The server refused the delivery.")

    def _channel(self, channel_id: int) -> SocialChannel:
        provider = SocialChannel.objects.filter(pk=channel_id).values_list("provider", flat=True).first()
        if provider is None:
            raise CommandError(f"No social channel {channel_id}.")
        return CHANNEL_MODELS[provider].objects.select_related("inbox").get(pk=channel_id)

    @staticmethod
    def _default_sample(channel: SocialChannel) -> str:
        if isinstance(channel, TelegramChannel):
            return "telegram-message"
        if isinstance(channel, TwilioChannel):
            return "twilio-sms"
        assert isinstance(channel, MetaChannel)  # noqa: S101  # the three providers
        return {MetaKind.WHATSAPP: "whatsapp-text", MetaKind.MESSENGER: "messenger-text"}.get(
            MetaKind(channel.kind), "instagram-text"
        )

    def _signed(
        self, channel: SocialChannel, sample: str, template: str, values: dict[str, str]
    ) -> tuple[str, dict[str, str], bytes]:
        token = secrets.token_hex(8)
        if isinstance(channel, MetaChannel):
            values["account_id"] = channel.account_id
            values["sender"] = values["sender"] or "15551234567"
            values["message_id"] = values["message_id"] or f"wamid.replay-{token}"
            if channel.kind != MetaKind.WHATSAPP:
                values["sender"] = values["sender"] if values["sender"] != "15551234567" else "6789012345"
                values["message_id"] = values["message_id"].replace("wamid.replay-", "m_replay-")
            body = _fill(template, values)
            headers = {
                "Content-Type": "application/json",
                meta.SIGNATURE_HEADER: meta.signature(body, channel.app_secret),
            }
            return channel.webhook_path(), headers, body
        if isinstance(channel, TelegramChannel):
            values["sender"] = values["sender"] or "4242"
            values["update_id"] = values["message_id"] or str(int(time.time() * 1000) % 2_000_000_000)
            body = _fill(template, values)
            headers = {"Content-Type": "application/json", telegram.SECRET_HEADER: channel.webhook_secret}
            return channel.webhook_path(), headers, body
        assert isinstance(channel, TwilioChannel)  # noqa: S101
        prefix = "CA" if sample == "twilio-voice" else "SM"
        values.update(account_sid=channel.account_sid, phone_number=channel.phone_number)
        values["sender"] = values["sender"] or "+15557654321"
        values["message_id"] = values["message_id"] or prefix + secrets.token_hex(16)
        params: dict[str, str] = json.loads(_fill(template, values))
        path = f"{channel.webhook_path()}{'voice' if sample == 'twilio-voice' else 'sms'}/"
        signature = twilio.signature(
            channel.public_base_url.rstrip("/") + path, list(params.items()), channel.auth_token
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded", twilio.SIGNATURE_HEADER: signature}
        return path, headers, urlencode(params).encode()
