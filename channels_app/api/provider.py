"""The API channel as a webhook provider (channels_app.webhooks.contract). Its deliveries
do not come to /hooks/: the integration pushes them to /api/v1/channels/<id>/messages with
an API token, which the policy checks (channels_app.api.views); the contract's intake side
is therefore empty, and the rest (items, replies, secrets) is as for any provider."""

from __future__ import annotations

import json

from channels_app.api import callbacks
from channels_app.api.models import ApiChannel
from channels_app.webhooks.contract import HookRequest, SampleUnavailable, SignedSample
from channels_app.webhooks.items import Delivery, InboundText, Item, Malformed, json_object, obj, text_of
from channels_app.webhooks.models import InboundEvent, Provider
from channels_app.webhooks.providers.base import BaseProvider
from inbox.models import ChannelKind

# Pushes carry an integration's API token, which only the integration holds.
NO_SAMPLE = "An API channel's pushes need the integration's API token: see docs/adding-a-channel.md."
# The reply API takes as much as agents may write; the integration cuts if it must.
TEXT_LIMIT = 20_000


def handle_of(channel: ApiChannel, sender_id: str) -> str:
    """Contacts are known per channel: two integrations' customer "42" are two people."""
    return f"{channel.pk}:{sender_id}"


def pushed_delivery(message_id: str, payload: dict[str, object]) -> tuple[Delivery, bytes]:
    """A validated push, as it is stored: keyed by the integration's message id, so a repeated
    push is stored once."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return Delivery(payload=payload, ids=[f"message:{message_id}"]), body


class Api(BaseProvider):
    name = Provider.API
    model = ApiChannel
    inbox_kinds = frozenset({ChannelKind.API})
    content_type = "application/json"
    secret_fields = ("callback_secret",)
    hooks: dict[str, str] = {}  # pushed through the REST API, never to /hooks/

    def verify(self, channel: ApiChannel, request: HookRequest) -> str | None:
        return "API channels take messages at /api/v1/channels/<id>/messages, with a token"

    def read(self, request: HookRequest) -> Delivery:
        raise Malformed("API channels take messages at /api/v1/channels/<id>/messages.")

    def items(self, channel: ApiChannel, endpoint: str, body: bytes) -> list[Item]:
        payload = json_object(body)
        sender = obj(payload.get("sender"))
        sender_id = text_of(sender.get("id"), 190)
        if endpoint != InboundEvent.Endpoint.API or not sender_id:
            raise Malformed("Not a stored API push.")
        return [
            InboundText(
                provider_message_id=text_of(payload.get("message_id"), 190),
                handle=handle_of(channel, sender_id),
                sender_name=text_of(sender.get("name"), 200) or sender_id,
                text=text_of(payload.get("text")),
            )
        ]

    def text_limit(self, channel: ApiChannel) -> int:
        return TEXT_LIMIT

    def send(self, channel: ApiChannel, recipient: str, text: str, idempotency_key: str) -> str:
        return callbacks.reply_post(
            url=channel.callback_url,
            secret=channel.callback_secret,
            recipient=recipient.removeprefix(f"{channel.pk}:"),
            text=text,
            idempotency_key=idempotency_key,
        )

    def sample_default(self, channel: ApiChannel) -> str:
        raise SampleUnavailable(NO_SAMPLE)

    def sample_signed(
        self, channel: ApiChannel, sample: str, template: str, values: dict[str, str]
    ) -> SignedSample:
        raise SampleUnavailable(NO_SAMPLE)
