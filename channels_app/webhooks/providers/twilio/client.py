"""Twilio: SMS/MMS and voice webhooks, TwiML answers, and the Messages API.

X-Twilio-Signature is the base64 HMAC-SHA1, under the auth token, of the full URL Twilio
requested followed by every form parameter's name and value, sorted by name (and by
value within a name). The URL is the configured public one, so the check holds behind a
TLS-terminating proxy; Twilio signs it sometimes with the default port and sometimes
without, so both spellings are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape, quoteattr

from django.conf import settings

from channels_app.common import provider_http
from channels_app.common.provider_http import ProviderError
from channels_app.webhooks.items import (
    CallEvent,
    Delivery,
    InboundText,
    Item,
    Malformed,
    MediaRef,
    Skipped,
    StatusChange,
    obj,
    secrets_equal,
    text_of,
)
from channels_app.webhooks.models import InboundEvent
from channels_app.webhooks.providers.twilio.models import TwilioChannel
from inbox.models import Message

SIGNATURE_HEADER = "X-Twilio-Signature"
# What Twilio posts its webhooks as (the signature covers the form's parameters); anything
# else is refused before it is read.
CONTENT_TYPE = "application/x-www-form-urlencoded"
TEXT_LIMIT = 1600
MAX_FIELDS = 200
MAX_MEDIA = 10
Endpoint = InboundEvent.Endpoint

STATUSES = {
    "sent": Message.DeliveryStatus.SENT,
    "delivered": Message.DeliveryStatus.DELIVERED,
    "read": Message.DeliveryStatus.READ,
    "undelivered": Message.DeliveryStatus.FAILED,
    "failed": Message.DeliveryStatus.FAILED,
}
# Parameters each request must carry, past the signature.
REQUIRED: dict[str, tuple[str, ...]] = {
    Endpoint.TWILIO_SMS: ("MessageSid", "From", "To"),
    Endpoint.TWILIO_SMS_STATUS: ("MessageSid", "MessageStatus"),
    Endpoint.TWILIO_VOICE: ("CallSid", "From", "To"),
    Endpoint.TWILIO_DIAL: ("CallSid", "From"),
    Endpoint.TWILIO_RECORDING: ("CallSid", "From", "RecordingSid", "RecordingUrl"),
    Endpoint.TWILIO_TRANSCRIPTION: ("CallSid", "From", "TranscriptionSid"),
    Endpoint.TWILIO_CALL_STATUS: ("CallSid", "From", "CallStatus"),
}


@dataclass(frozen=True)
class Form:
    """A form body as Twilio signed it: every value of every name, in order."""

    pairs: list[tuple[str, str]]

    def get(self, name: str) -> str:
        return next((value for key, value in self.pairs if key == name), "")

    def as_dict(self) -> dict[str, str]:
        return {key: value for key, value in reversed(self.pairs)}


def form_read(body: bytes) -> Form:
    """The body as a form; the webhook view has already checked it is declared one."""
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise Malformed("The form body cannot be read.") from None
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        raise Malformed("The form holds a NUL character.")
    return Form(pairs)


def signature(url: str, pairs: list[tuple[str, str]], auth_token: str) -> str:
    values: dict[str, set[str]] = {}
    for key, value in pairs:
        values.setdefault(key, set()).add(value)
    data = url + "".join(key + value for key in sorted(values) for value in sorted(values[key]))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _port_spellings(url: str) -> list[str]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = parts.port or default
    without = urlunsplit(parts._replace(netloc=host)) if port == default else url
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{port}"))
    return list(dict.fromkeys([url, without, with_port]))


def signature_problem(url: str, form: Form, header: str | None, auth_token: str) -> str | None:
    if not header:
        return "missing X-Twilio-Signature"
    valid = [
        secrets_equal(header.strip(), signature(u, form.pairs, auth_token)) for u in _port_spellings(url)
    ]
    if not any(valid):
        return "X-Twilio-Signature does not match the URL and parameters"
    return None


def delivery_read(endpoint: str, form: Form) -> Delivery:
    missing = [name for name in REQUIRED[Endpoint(endpoint)] if not form.get(name)]
    if missing:
        raise Malformed(f"Missing {', '.join(missing)}.")
    key = {
        Endpoint.TWILIO_SMS: form.get("MessageSid"),
        Endpoint.TWILIO_SMS_STATUS: f"sms-status:{form.get('MessageSid')}:{form.get('MessageStatus')}",
        Endpoint.TWILIO_VOICE: f"voice:{form.get('CallSid')}",
        Endpoint.TWILIO_DIAL: f"dial:{form.get('CallSid')}",
        Endpoint.TWILIO_RECORDING: f"recording:{form.get('RecordingSid')}",
        Endpoint.TWILIO_TRANSCRIPTION: f"transcription:{form.get('TranscriptionSid')}",
        Endpoint.TWILIO_CALL_STATUS: f"call-status:{form.get('CallSid')}:{form.get('CallStatus')}",
    }[Endpoint(endpoint)]
    return Delivery(payload=form, ids=[key[:190]])


def items(endpoint: str, fields: Mapping[str, str], channel: TwilioChannel) -> list[Item]:
    if fields.get("AccountSid") and not secrets_equal(fields["AccountSid"], channel.account_sid):
        return [Skipped("for another Twilio account")]
    if endpoint == Endpoint.TWILIO_SMS:
        return [_sms(fields, channel)]
    if endpoint == Endpoint.TWILIO_SMS_STATUS:
        status = STATUSES.get(fields.get("MessageStatus", ""))
        if status is None:
            return [Skipped(f"twilio message status {fields.get('MessageStatus')!r}")]
        detail = f"Twilio error {fields['ErrorCode']}" if fields.get("ErrorCode") else ""
        return [StatusChange(status=status, provider_message_id=fields["MessageSid"], detail=detail)]
    call = CallEvent(call_sid=fields["CallSid"], caller=text_of(fields.get("From"), 32))
    if endpoint == Endpoint.TWILIO_VOICE:
        return [CallEvent(call.call_sid, call.caller, call_status="ringing")]
    if endpoint == Endpoint.TWILIO_DIAL:
        answered = fields.get("DialCallStatus") == "completed"
        return [
            CallEvent(
                call.call_sid,
                call.caller,
                answered=answered,
                duration_seconds=_seconds(fields.get("DialCallDuration")) if answered else None,
            )
        ]
    if endpoint == Endpoint.TWILIO_RECORDING:
        return [
            CallEvent(
                call.call_sid,
                call.caller,
                recording_url=_https_url(fields.get("RecordingUrl", "")),
                recording_seconds=_seconds(fields.get("RecordingDuration")),
            )
        ]
    if endpoint == Endpoint.TWILIO_TRANSCRIPTION:
        if fields.get("TranscriptionStatus") != "completed":
            return [Skipped(f"twilio transcription {fields.get('TranscriptionStatus')!r}")]
        return [CallEvent(call.call_sid, call.caller, transcription=text_of(fields.get("TranscriptionText")))]
    return [
        CallEvent(
            call.call_sid,
            call.caller,
            call_status=text_of(fields.get("CallStatus"), 16),
            duration_seconds=_seconds(fields.get("CallDuration")),
        )
    ]


def _sms(fields: Mapping[str, str], channel: TwilioChannel) -> Item:
    if fields.get("To") != channel.phone_number:
        return Skipped("an SMS to another number")
    count = min(_seconds(fields.get("NumMedia")) or 0, MAX_MEDIA)
    media = tuple(
        MediaRef(ref=fields[f"MediaUrl{i}"], declared_type=text_of(fields.get(f"MediaContentType{i}"), 100))
        for i in range(count)
        if fields.get(f"MediaUrl{i}")
    )
    sender = text_of(fields.get("From"), 32)
    return InboundText(
        provider_message_id=fields["MessageSid"],
        handle=sender,
        sender_name=sender,
        text=text_of(fields.get("Body")),
        media=media,
    )


def _seconds(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 10 else None


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    return value[:500] if parts.scheme in {"http", "https"} and parts.hostname else ""


# --- TwiML answers ----------------------------------------------------------------------

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
HANGUP_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'


def hook_url(channel: TwilioChannel, name: str) -> str:
    return f"{channel.public_base_url.rstrip('/')}{channel.webhook_path()}{name}/"


def voicemail_twiml(channel: TwilioChannel) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f"<Say>{escape(channel.voicemail_greeting)}</Say>"
        f'<Record maxLength={quoteattr(str(channel.voicemail_max_seconds))} playBeep="true"'
        f" action={quoteattr(hook_url(channel, 'recording'))}"
        f' transcribe="true" transcribeCallback={quoteattr(hook_url(channel, "transcription"))}/>'
        "</Response>"
    )


def incoming_call_twiml(channel: TwilioChannel) -> str:
    """Ring the forwarding number first when there is one; voicemail otherwise."""
    if not channel.forward_to:
        return voicemail_twiml(channel)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f'<Dial timeout="20" action={quoteattr(hook_url(channel, "dial"))}>'
        f"{escape(channel.forward_to)}</Dial>"
        "</Response>"
    )


def dial_result_twiml(channel: TwilioChannel, form: Form) -> str:
    return HANGUP_TWIML if form.get("DialCallStatus") == "completed" else voicemail_twiml(channel)


# --- Messages API -----------------------------------------------------------------------


def _base(channel: TwilioChannel) -> str:
    return (channel.api_base_url or settings.TWILIO_API_BASE_URL).rstrip("/")


def text_send(channel: TwilioChannel, to: str, text: str) -> str:
    response = provider_http.request(
        "POST",
        f"{_base(channel)}/2010-04-01/Accounts/{channel.account_sid}/Messages.json",
        form={
            "To": to,
            "From": channel.phone_number,
            "Body": text,
            "StatusCallback": hook_url(channel, "sms-status"),
        },
        auth=(channel.account_sid, channel.auth_token),
    )
    answer = obj(response.json()) if response.content else {}
    if response.status >= 400:
        raise ProviderError(
            f"Twilio refused (HTTP {response.status}, code {answer.get('code')}): "
            f"{text_of(answer.get('message'), 300) or 'no reason given'}",
            transient=provider_http.status_transient(response.status),
            retry_after=provider_http.retry_after(response),
        )
    sid = answer.get("sid")
    if not isinstance(sid, str) or not sid:
        raise ProviderError("Twilio accepted the message but named no id", transient=False)
    return sid


def media_fetch(channel: TwilioChannel, media: MediaRef, max_bytes: int) -> bytes:
    """Media lives under the account on Twilio's API, which redirects to its CDN; the
    credentials go to the API only."""
    if not media.ref.startswith(_base(channel) + "/"):
        raise ProviderError("the media URL is not on the Twilio API", transient=False)
    response = provider_http.request(
        "GET", media.ref, auth=(channel.account_sid, channel.auth_token), max_bytes=max_bytes, redirects=3
    )
    if response.status >= 400:
        raise ProviderError(
            f"Twilio refused the media (HTTP {response.status})",
            transient=provider_http.status_transient(response.status),
        )
    return response.content
