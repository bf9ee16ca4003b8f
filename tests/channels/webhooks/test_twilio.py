"""Twilio SMS/MMS and voice: X-Twilio-Signature over the public URL and sorted form
parameters (checked against the official twilio package), TwiML answers, processing."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from pytest_httpserver import HTTPServer
from twilio.request_validator import RequestValidator

from audit.models import SecurityEvent
from channels_app.models import CallRecord, InboundEvent, TwilioChannel, VerificationMode
from channels_app.webhooks.providers.twilio import client as twilio
from inbox.models import Attachment, ChannelKind, Contact, ContactIdentity, Conversation, Message
from tests.channels.webhooks.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PHONE,
    PUBLIC_BASE,
    api_base,
    drain,
    make_inbox,
    twilio_basic_auth,
    twilio_post,
)

pytestmark = pytest.mark.django_db

CALLER = "+15557654321"
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 64


def sms(**extra: str) -> dict[str, str]:
    return {
        "MessageSid": "SM" + "1" * 32,
        "SmsSid": "SM" + "1" * 32,
        "AccountSid": ACCOUNT_SID,
        "From": CALLER,
        "To": PHONE,
        "Body": "Is the shop open today?",
        "NumMedia": "0",
        **extra,
    }


def call(**extra: str) -> dict[str, str]:
    return {"CallSid": "CA" + "2" * 32, "AccountSid": ACCOUNT_SID, "From": CALLER, "To": PHONE, **extra}


# --- Signatures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            {
                "CallSid": "CA1234567890ABCDE",
                "Caller": "+12349013030",
                "Digits": "1234",
                "From": "+12349013030",
                "To": "+18005551212",
            },
        ),
        (
            "https://inbox.example.com/hooks/twilio/7/sms/",
            {"Body": "Grüße, ça va? 😀", "From": "+1", "Zeta": "", "alpha": "a"},
        ),
        ("https://inbox.example.com:8443/hooks/twilio/7/sms/", {}),
    ],
)
def test_signature_agrees_with_the_official_validator(url: str, params: dict[str, str]) -> None:
    expected = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    pairs = list(params.items())
    assert twilio.signature(url, pairs, AUTH_TOKEN) == expected
    assert twilio.signature_problem(url, twilio.Form(pairs), expected, AUTH_TOKEN) is None
    assert RequestValidator(AUTH_TOKEN).validate(url, params, expected)


def test_signature_with_repeated_parameters_agrees() -> None:
    url = "https://inbox.example.com/hooks/twilio/1/sms/"
    pairs = [("MediaUrl", "b"), ("Body", "x"), ("MediaUrl", "a")]

    class Multi(dict[str, str]):
        def getlist(self, name: str) -> list[str]:
            return [value for key, value in pairs if key == name]

    assert twilio.signature(url, pairs, AUTH_TOKEN) == RequestValidator(AUTH_TOKEN).compute_signature(
        url, Multi({"MediaUrl": "b", "Body": "x"})
    )


def test_twilio_signs_with_or_without_the_default_port() -> None:
    params = {"From": CALLER}
    with_port = RequestValidator(AUTH_TOKEN).compute_signature("https://inbox.example.com:443/x", params)
    form = twilio.Form(list(params.items()))
    assert twilio.signature_problem("https://inbox.example.com/x", form, with_port, AUTH_TOKEN) is None
    assert (
        twilio.signature_problem("https://inbox.example.com:8443/x", form, with_port, AUTH_TOKEN) is not None
    )


# --- Intake -----------------------------------------------------------------------------


def test_signed_sms_is_stored_and_answered_with_twiml(
    client: Client, twilio_channel: Callable[..., TwilioChannel]
) -> None:
    channel = twilio_channel()
    response = twilio_post(client, channel, "sms", sms())
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml") and b"<Response/>" in response.content
    event = InboundEvent.objects.get()
    assert event.endpoint == InboundEvent.Endpoint.TWILIO_SMS and event.event_key == "SM" + "1" * 32


@pytest.mark.parametrize(
    "tamper",
    [
        "parameter",
        "added_parameter",
        "removed_parameter",
        "url_host",
        "url_scheme",
        "url_path",
        "url_query",
        "token",
    ],
)
def test_tampered_request_is_refused_and_nothing_stored(
    client: Client, twilio_channel: Callable[..., TwilioChannel], tamper: str
) -> None:
    channel = twilio_channel()
    params = sms()
    signed = dict(params)
    path = f"{channel.webhook_path()}sms/"
    signed_url = PUBLIC_BASE + path
    token = AUTH_TOKEN
    if tamper == "parameter":
        params["Body"] = "Send me the admin password"
    elif tamper == "added_parameter":
        params["NumMedia"] = "1"
        params["MediaUrl0"] = "http://10.0.0.1/"
    elif tamper == "removed_parameter":
        del params["SmsSid"]
    elif tamper == "url_host":
        signed_url = "https://attacker.example.com" + path
    elif tamper == "url_scheme":
        signed_url = "http://inbox.example.com" + path
    elif tamper == "url_path":
        signed_url = PUBLIC_BASE + path.replace("/sms/", "/voice/")
    elif tamper == "url_query":
        signed_url = PUBLIC_BASE + path + "?extra=1"
    elif tamper == "token":
        token = "not-the-auth-token"
    response = twilio_post(
        client, channel, "sms", params, token=token, signed_url=signed_url, signed_params=signed
    )
    assert response.status_code == 403
    assert not InboundEvent.objects.exists()
    [event] = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.WEBHOOK_REFUSED)
    assert event.detail["provider"] == "twilio"


def test_missing_signature_is_refused(client: Client, twilio_channel: Callable[..., TwilioChannel]) -> None:
    channel = twilio_channel()
    response = client.post(
        f"{channel.webhook_path()}sms/",
        data=urlencode(sms()),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 403
    assert not InboundEvent.objects.exists()


def test_the_query_string_is_part_of_the_signed_url(
    client: Client, twilio_channel: Callable[..., TwilioChannel]
) -> None:
    channel = twilio_channel()
    path = f"{channel.webhook_path()}sms/?source=console"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + path, sms())
    response = client.post(
        path,
        data=urlencode(sms()),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )
    assert response.status_code == 200


@pytest.mark.parametrize("body", [b"\xff\xfe=1", b"a=1&&b", b"From=x\x00"])
def test_unreadable_form_is_400(
    client: Client, twilio_channel: Callable[..., TwilioChannel], body: bytes
) -> None:
    channel = twilio_channel()
    response = client.post(
        f"{channel.webhook_path()}sms/",
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE="x",
    )
    assert response.status_code == 400
    assert not InboundEvent.objects.exists()


def test_signed_form_missing_fields_is_400(
    client: Client, twilio_channel: Callable[..., TwilioChannel]
) -> None:
    channel = twilio_channel()
    params = sms()
    del params["MessageSid"]
    assert twilio_post(client, channel, "sms", params).status_code == 400
    assert not InboundEvent.objects.exists()


def test_unknown_hook_is_404(client: Client, twilio_channel: Callable[..., TwilioChannel]) -> None:
    channel = twilio_channel()
    assert twilio_post(client, channel, "fax", sms()).status_code == 404


def test_replayed_sms_is_stored_once(client: Client, twilio_channel: Callable[..., TwilioChannel]) -> None:
    channel = twilio_channel()
    for _ in range(2):
        assert twilio_post(client, channel, "sms", sms()).status_code == 200
    assert InboundEvent.objects.count() == 1


def test_monitor_mode(client: Client, twilio_channel: Callable[..., TwilioChannel]) -> None:
    channel = twilio_channel(verification_mode=VerificationMode.MONITOR)
    assert twilio_post(client, channel, "sms", sms(), token="old-token").status_code == 200
    event = InboundEvent.objects.get()
    assert not event.verified
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.WEBHOOK_UNVERIFIED).count() == 1


# --- Processing -------------------------------------------------------------------------


def test_sms_becomes_a_message(client: Client, twilio_channel: Callable[..., TwilioChannel]) -> None:
    channel = twilio_channel()
    twilio_post(client, channel, "sms", sms())
    twilio_post(client, channel, "sms", sms(MessageSid="SM" + "9" * 32, To="+14155550199"))
    twilio_post(client, channel, "sms", sms(MessageSid="SM" + "8" * 32, AccountSid="AC" + "f" * 32))
    drain(channel)
    message = Message.objects.get()
    assert message.inbox_id == channel.inbox_id and message.text == "Is the shop open today?"
    identity = message.conversation.contact.identities.get()
    assert (identity.channel_kind, identity.handle) == (ChannelKind.SMS, CALLER)
    reasons = sorted(
        InboundEvent.objects.filter(status=InboundEvent.Status.IGNORED).values_list("reason", flat=True)
    )
    assert reasons == ["Skipped: an SMS to another number.", "Skipped: for another Twilio account."]


def test_mms_media_is_fetched_with_the_account_credentials(
    client: Client, twilio_channel: Callable[..., TwilioChannel], httpserver: HTTPServer
) -> None:
    channel = twilio_channel()
    media_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1"
    httpserver.expect_request(media_path, headers={"Authorization": twilio_basic_auth()}).respond_with_data(
        "", status=307, headers={"Location": "/cdn/ME1"}
    )
    httpserver.expect_request("/cdn/ME1").respond_with_data(MP3, content_type="audio/mpeg")
    params = sms(NumMedia="2", MediaUrl0=api_base(httpserver) + media_path, MediaContentType0="audio/mpeg")
    params.update(MediaUrl1="https://elsewhere.example.com/evil", MediaContentType1="image/png")
    twilio_post(client, channel, "sms", params)
    drain(channel)
    message = Message.objects.get()
    attachment = Attachment.objects.get(message=message)
    assert attachment.content_type == "audio/mpeg" and attachment.file.read() == MP3
    assert "not on the Twilio API" in message.text


def test_sms_status_callbacks_update_the_reply(
    client: Client, twilio_channel: Callable[..., TwilioChannel]
) -> None:
    channel = twilio_channel()
    contact = Contact.objects.create()
    ContactIdentity.objects.create(contact=contact, channel_kind=ChannelKind.SMS, handle=CALLER)
    conversation = Conversation.objects.create(
        inbox=channel.inbox, contact=contact, last_activity_at=timezone.now()
    )
    sid = "SM" + "5" * 32
    reply = Message.objects.create(
        conversation=conversation,
        inbox=channel.inbox,
        direction=Message.Direction.OUTBOUND,
        text="Yes until 6pm",
        provider_message_id=sid,
        delivery_status=Message.DeliveryStatus.SENT,
    )
    twilio_post(
        client,
        channel,
        "sms-status",
        {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003", "AccountSid": ACCOUNT_SID},
    )
    drain(channel)
    reply.refresh_from_db()
    assert (
        reply.delivery_status == Message.DeliveryStatus.FAILED
        and reply.delivery_detail == "Twilio error 30003"
    )


def test_voicemail_call_is_recorded_as_a_conversation_entry(
    client: Client, twilio_channel: Callable[..., TwilioChannel], httpserver: HTTPServer
) -> None:
    channel = twilio_channel(inbox=make_inbox(ChannelKind.VOICE))
    answer = twilio_post(client, channel, "voice", call(CallStatus="ringing", Direction="inbound"))
    twiml = answer.content.decode()
    assert answer.status_code == 200 and "<Say>Sorry, nobody can take your call." in twiml
    assert f'action="{PUBLIC_BASE}/hooks/twilio/{channel.pk}/recording/"' in twiml
    assert f'transcribeCallback="{PUBLIC_BASE}/hooks/twilio/{channel.pk}/transcription/"' in twiml
    drain(channel)
    record = CallRecord.objects.get()
    assert record.message is not None and record.message.text == f"Incoming call from {CALLER}."
    assert record.message.inbox_id == channel.inbox_id

    recording_url = f"{api_base(httpserver)}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE1"
    httpserver.expect_request(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE1.mp3").respond_with_data(MP3)
    hangup = twilio_post(
        client,
        channel,
        "recording",
        call(RecordingSid="RE1", RecordingUrl=recording_url, RecordingDuration="42"),
    )
    assert "<Hangup/>" in hangup.content.decode()
    twilio_post(
        client,
        channel,
        "transcription",
        call(
            TranscriptionSid="TR1", TranscriptionStatus="completed", TranscriptionText="Please call me back."
        ),
    )
    twilio_post(client, channel, "call-status", call(CallStatus="completed", CallDuration="58"))
    drain(channel)
    record.refresh_from_db()
    assert record.answered is False and record.recording_seconds == 42 and record.duration_seconds == 58
    message = Message.objects.get()
    assert message.text == (
        f"Missed call from {CALLER}.\nVoicemail (0:42): {recording_url}\nTranscription: Please call me back."
    )
    assert message.attachments.get().content_type == "audio/mpeg"
    assert message.conversation.contact.identities.get().channel_kind == ChannelKind.SMS


def test_forwarded_call_answered(client: Client, twilio_channel: Callable[..., TwilioChannel]) -> None:
    channel = twilio_channel(forward_to="+14155550111")
    twiml = twilio_post(client, channel, "voice", call(CallStatus="ringing")).content.decode()
    assert "<Dial" in twiml and "+14155550111</Dial>" in twiml
    assert (
        twilio_post(client, channel, "dial", call(DialCallStatus="completed", DialCallDuration="95"))
        .content.decode()
        .endswith("<Hangup/></Response>")
    )
    twilio_post(client, channel, "call-status", call(CallStatus="completed", CallDuration="110"))
    drain(channel)
    record = CallRecord.objects.get()
    assert record.answered is True and record.duration_seconds == 95
    assert Message.objects.get().text == f"Answered call from {CALLER}, 1:35."


def test_forwarded_call_not_answered_goes_to_voicemail(
    client: Client, twilio_channel: Callable[..., TwilioChannel]
) -> None:
    channel = twilio_channel(forward_to="+14155550111")
    twiml = twilio_post(client, channel, "dial", call(DialCallStatus="no-answer")).content.decode()
    assert "<Record" in twiml


def test_voicemail_greeting_is_escaped(client: Client, twilio_channel: Callable[..., TwilioChannel]) -> None:
    channel = twilio_channel(voicemail_greeting='Leave a message </Say><Dial>+1900</Dial> "now"')
    twiml = twilio_post(client, channel, "voice", call()).content.decode()
    assert "<Dial>" not in twiml and "&lt;/Say&gt;" in twiml
