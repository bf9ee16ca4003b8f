"""Twilio (SMS/MMS and voice) as a webhook provider (channels_app.webhooks.contract)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from urllib.parse import urlencode

from channels_app.webhooks.contract import Answer, HookRequest, SignedSample, sample_fill
from channels_app.webhooks.items import CallEvent, Delivery, FetchedMedia, Item, MediaRef
from channels_app.webhooks.models import InboundEvent, Provider
from channels_app.webhooks.providers.base import BaseProvider
from channels_app.webhooks.providers.twilio import calls, client
from channels_app.webhooks.providers.twilio.models import TwilioChannel
from inbox.models import ChannelKind

Endpoint = InboundEvent.Endpoint
TWIML = "text/xml; charset=utf-8"


class Twilio(BaseProvider):
    name = Provider.TWILIO
    model = TwilioChannel
    content_type = client.CONTENT_TYPE
    inbox_kinds = frozenset({ChannelKind.SMS, ChannelKind.VOICE})
    secret_fields = ("auth_token",)
    hooks = {
        "sms": Endpoint.TWILIO_SMS,
        "sms-status": Endpoint.TWILIO_SMS_STATUS,
        "voice": Endpoint.TWILIO_VOICE,
        "dial": Endpoint.TWILIO_DIAL,
        "recording": Endpoint.TWILIO_RECORDING,
        "transcription": Endpoint.TWILIO_TRANSCRIPTION,
        "call-status": Endpoint.TWILIO_CALL_STATUS,
    }

    def verify(self, channel: TwilioChannel, request: HookRequest) -> str | None:
        # Twilio signs the URL it called and the form's parameters: the form is read first.
        url = channel.public_base_url.rstrip("/") + request.full_path
        return client.signature_problem(
            url,
            client.form_read(request.body),
            request.headers.get(client.SIGNATURE_HEADER),
            channel.auth_token,
        )

    def read(self, request: HookRequest) -> Delivery:
        return client.delivery_read(request.endpoint, client.form_read(request.body))

    def answer(self, channel: TwilioChannel, request: HookRequest, delivery: Delivery) -> Answer:
        if request.endpoint == Endpoint.TWILIO_VOICE:
            return Answer(client.incoming_call_twiml(channel), TWIML)
        if request.endpoint == Endpoint.TWILIO_DIAL:
            return Answer(client.dial_result_twiml(channel, delivery.payload), TWIML)
        if request.endpoint == Endpoint.TWILIO_RECORDING:
            return Answer(client.HANGUP_TWIML, TWIML)
        return Answer(client.EMPTY_TWIML, TWIML)

    def items(self, channel: TwilioChannel, endpoint: str, body: bytes) -> list[Item]:
        return client.items(endpoint, client.form_read(body).as_dict(), channel)

    def extra_media(self, item: Item) -> list[MediaRef]:
        if isinstance(item, CallEvent) and item.recording_url:
            return [calls.recording_ref(item)]
        return []

    def apply(self, channel: TwilioChannel, item: Item, media: Mapping[str, FetchedMedia]) -> bool:
        if not isinstance(item, CallEvent):
            return False
        calls.call_record(channel, item, media)
        return True

    def media_fetch(self, channel: TwilioChannel, media: MediaRef, max_bytes: int) -> bytes:
        return client.media_fetch(channel, media, max_bytes)

    def text_limit(self, channel: TwilioChannel) -> int:
        return client.TEXT_LIMIT

    def send(self, channel: TwilioChannel, recipient: str, text: str, idempotency_key: str) -> str:
        # The Messages API takes no idempotency key: the message row's lock is what prevents a repeat.
        return client.text_send(channel, recipient, text)

    def sample_default(self, channel: TwilioChannel) -> str:
        return "twilio-sms"

    def sample_signed(
        self, channel: TwilioChannel, sample: str, template: str, values: dict[str, str]
    ) -> SignedSample:
        voice = sample == "twilio-voice"
        values.update(account_sid=channel.account_sid, phone_number=channel.phone_number)
        values["sender"] = values["sender"] or "+15557654321"
        values["message_id"] = values["message_id"] or ("CA" if voice else "SM") + secrets.token_hex(16)
        params: dict[str, str] = json.loads(sample_fill(template, values))
        path = f"{channel.webhook_path()}{'voice' if voice else 'sms'}/"
        signature = client.signature(
            channel.public_base_url.rstrip("/") + path, list(params.items()), channel.auth_token
        )
        headers = {"Content-Type": client.CONTENT_TYPE, client.SIGNATURE_HEADER: signature}
        return SignedSample(path, headers, urlencode(params).encode())
