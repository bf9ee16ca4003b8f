"""Meta (WhatsApp Cloud API, Messenger, Instagram) as a webhook provider
(channels_app.webhooks.contract)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from channels_app.webhooks.contract import HookRequest, SignedSample, sample_fill
from channels_app.webhooks.items import Delivery, Item, MediaRef
from channels_app.webhooks.models import InboundEvent, Provider
from channels_app.webhooks.providers.base import BaseProvider
from channels_app.webhooks.providers.meta import client, selectors
from channels_app.webhooks.providers.meta.models import MetaChannel, MetaKind
from inbox.models import ChannelKind, Message

WINDOW_CLOSED = (
    "Outside WhatsApp's 24-hour customer service window: the customer has not written in the last "
    "24 hours, so only an approved template message can be sent."
)


class Meta(BaseProvider):
    name = Provider.META
    model = MetaChannel
    content_type = client.CONTENT_TYPE
    inbox_kinds = frozenset({ChannelKind.WHATSAPP, ChannelKind.MESSENGER, ChannelKind.INSTAGRAM})
    secret_fields = ("app_secret", "verify_token", "access_token")
    hooks = {"": InboundEvent.Endpoint.META}
    methods = ("GET", "POST")

    def subscription_challenge(self, channel: MetaChannel, params: Mapping[str, str]) -> str | None:
        return client.subscription_challenge(dict(params), channel.verify_token)

    def verify(self, channel: MetaChannel, request: HookRequest) -> str | None:
        return client.signature_problem(
            request.body, request.headers.get(client.SIGNATURE_HEADER), channel.app_secret
        )

    def read(self, request: HookRequest) -> Delivery:
        return client.delivery_read(request.body)

    def items(self, channel: MetaChannel, endpoint: str, body: bytes) -> list[Item]:
        return client.items(client.delivery_read(body).payload, channel)

    def media_fetch(self, channel: MetaChannel, media: MediaRef, max_bytes: int) -> bytes:
        return client.media_fetch(channel, media, max_bytes)

    def text_limit(self, channel: MetaChannel) -> int:
        return client.TEXT_LIMITS[MetaKind(channel.kind)]

    def reply_refusal(self, channel: MetaChannel, message: Message) -> str | None:
        if channel.kind == MetaKind.WHATSAPP and not selectors.whatsapp_window_open(message.conversation):
            return WINDOW_CLOSED
        return None

    def send(self, channel: MetaChannel, recipient: str, text: str, idempotency_key: str) -> str:
        # The Graph API takes no idempotency key: the message row's lock is what prevents a repeat.
        return client.text_send(channel, recipient, text)

    def sample_default(self, channel: MetaChannel) -> str:
        return {MetaKind.WHATSAPP: "whatsapp-text", MetaKind.MESSENGER: "messenger-text"}.get(
            MetaKind(channel.kind), "instagram-text"
        )

    def sample_signed(
        self, channel: MetaChannel, sample: str, template: str, values: dict[str, str]
    ) -> SignedSample:
        token = secrets.token_hex(8)
        values["account_id"] = channel.account_id
        if channel.kind == MetaKind.WHATSAPP:
            values["sender"] = values["sender"] or "15551234567"
            values["message_id"] = values["message_id"] or f"wamid.replay-{token}"
        else:
            values["sender"] = values["sender"] or "6789012345"
            values["message_id"] = values["message_id"] or f"m_replay-{token}"
        body = sample_fill(template, values)
        headers = {
            "Content-Type": client.CONTENT_TYPE,
            client.SIGNATURE_HEADER: client.signature(body, channel.app_secret),
        }
        return SignedSample(channel.webhook_path(), headers, body)
