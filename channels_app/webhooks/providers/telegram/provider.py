"""Telegram as a webhook provider (channels_app.webhooks.contract)."""

from __future__ import annotations

import time

from channels_app.webhooks.contract import HookRequest, SignedSample, sample_fill
from channels_app.webhooks.items import Delivery, Item, MediaRef
from channels_app.webhooks.models import InboundEvent, Provider
from channels_app.webhooks.providers.base import BaseProvider
from channels_app.webhooks.providers.telegram import client
from channels_app.webhooks.providers.telegram.models import TelegramChannel
from inbox.models import ChannelKind


class Telegram(BaseProvider):
    name = Provider.TELEGRAM
    model = TelegramChannel
    content_type = client.CONTENT_TYPE
    inbox_kinds = frozenset({ChannelKind.TELEGRAM})
    secret_fields = ("bot_token", "webhook_secret")
    hooks = {"": InboundEvent.Endpoint.TELEGRAM}

    def verify(self, channel: TelegramChannel, request: HookRequest) -> str | None:
        return client.secret_problem(request.headers.get(client.SECRET_HEADER), channel.webhook_secret)

    def read(self, request: HookRequest) -> Delivery:
        return client.update_read(request.body)

    def items(self, channel: TelegramChannel, endpoint: str, body: bytes) -> list[Item]:
        return client.items(client.update_read(body).payload)

    def media_fetch(self, channel: TelegramChannel, media: MediaRef, max_bytes: int) -> bytes:
        return client.media_fetch(channel, media, max_bytes)

    def text_limit(self, channel: TelegramChannel) -> int:
        return client.TEXT_LIMIT

    def send(self, channel: TelegramChannel, recipient: str, text: str, idempotency_key: str) -> str:
        # The Bot API takes no idempotency key: the message row's lock is what prevents a repeat.
        return client.text_send(channel, recipient, text)

    def sample_default(self, channel: TelegramChannel) -> str:
        return "telegram-message"

    def sample_signed(
        self, channel: TelegramChannel, sample: str, template: str, values: dict[str, str]
    ) -> SignedSample:
        values["sender"] = values["sender"] or "4242"
        values["update_id"] = values["message_id"] or str(int(time.time() * 1000) % 2_000_000_000)
        headers = {"Content-Type": client.CONTENT_TYPE, client.SECRET_HEADER: channel.webhook_secret}
        return SignedSample(channel.webhook_path(), headers, sample_fill(template, values))
