"""Meta webhooks (WhatsApp, Messenger, Instagram): proof of origin, storage, processing."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client, RequestFactory
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from audit.models import SecurityEvent
from channels_app.models import InboundEvent, MetaChannel, VerificationMode
from channels_app.webhooks import selectors as social_selectors
from channels_app.webhooks import services as social_services
from channels_app.webhooks.providers.meta import client as meta
from channels_app.webhooks.views import webhook
from inbox import policy
from inbox.models import Attachment, ChannelKind, Conversation, Message
from tests.channels.webhooks.conftest import (
    ACCESS_TOKEN,
    APP_SECRET,
    VERIFY_TOKEN,
    drain,
    messaging_text,
    meta_post,
    meta_signature,
    whatsapp_text,
)
from tests.inbox.conftest import ctx, grant_inbox

pytestmark = pytest.mark.django_db

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\x00" * 40


def refused_events() -> list[SecurityEvent]:
    return list(SecurityEvent.objects.filter(kind=SecurityEvent.Kind.WEBHOOK_REFUSED))


# --- Signature vectors ------------------------------------------------------------------


def test_signature_matches_an_independent_vector() -> None:
    body = b'{"object":"page","entry":[]}'
    # openssl dgst -sha256 -hmac 'meta-app-secret-for-tests' <<< body (no newline)
    expected = (
        subprocess.run(
            ["openssl", "dgst", "-sha256", "-hmac", APP_SECRET, "-r"],
            input=body,
            capture_output=True,
            check=True,
        )
        .stdout.split()[0]
        .decode()
    )
    assert meta.signature(body, APP_SECRET) == "sha256=" + expected
    assert meta.signature_problem(body, "sha256=" + expected, APP_SECRET) is None
    assert meta.signature_problem(body, "sha256=" + expected.upper(), APP_SECRET) is None
    assert meta.signature_problem(body + b" ", "sha256=" + expected, APP_SECRET) is not None
    assert meta.signature_problem(body, "sha1=" + expected, APP_SECRET) is not None
    assert meta.signature_problem(body, None, APP_SECRET) is not None


# --- Intake -----------------------------------------------------------------------------


def test_signed_delivery_is_stored_and_answered(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    payload = whatsapp_text(channel, wamid="wamid.A1")
    response = meta_post(client, channel, payload)
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.channel_id == channel.pk and event.verified and event.status == InboundEvent.Status.RECEIVED
    assert event.event_key == "wamid:wamid.A1"
    assert bytes(event.body) == json.dumps(payload).encode()
    assert not SecurityEvent.objects.exists()


@pytest.mark.parametrize(
    "tamper",
    ["body", "signature", "wrong_secret", "missing_header", "sha1_prefix", "other_channel_secret"],
)
def test_unproven_delivery_is_refused_and_nothing_stored(
    client: Client, meta_channel: Callable[..., MetaChannel], tamper: str
) -> None:
    channel = meta_channel()
    meta_channel(app_secret="another-apps-secret")
    body = json.dumps(whatsapp_text(channel, wamid="wamid.T1")).encode()
    signature: str | None = meta_signature(body)
    if tamper == "body":
        body = body.replace(b"Hi", b"Ha")
    elif tamper == "signature":
        assert signature is not None
        signature = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    elif tamper == "wrong_secret":
        signature = meta_signature(body, "not-the-secret")
    elif tamper == "missing_header":
        signature = None
    elif tamper == "sha1_prefix":
        signature = "sha1=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha1).hexdigest()
    elif tamper == "other_channel_secret":
        signature = meta_signature(body, "another-apps-secret")
    headers = {"HTTP_X_HUB_SIGNATURE_256": signature} if signature is not None else {}
    response = client.post(channel.webhook_path(), data=body, content_type="application/json", **headers)
    assert response.status_code == 403
    assert not InboundEvent.objects.exists()
    [event] = refused_events()
    assert event.detail["channel_id"] == channel.pk and event.detail["provider"] == "meta"
    assert APP_SECRET not in json.dumps(event.detail)


def test_unknown_or_disabled_channel_is_refused(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel(enabled=False)
    body = json.dumps(whatsapp_text(channel, wamid="wamid.D1")).encode()
    for path in (channel.webhook_path(), "/hooks/meta/999999/", "/hooks/meta/99999999999999999999999/"):
        response = client.post(
            path, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=meta_signature(body)
        )
        assert response.status_code == 403, path
    assert not InboundEvent.objects.exists()
    assert len(refused_events()) == 3


def test_replay_is_stored_once(client: Client, meta_channel: Callable[..., MetaChannel]) -> None:
    channel = meta_channel()
    payload = whatsapp_text(channel, wamid="wamid.R1")
    assert meta_post(client, channel, payload).status_code == 200
    assert meta_post(client, channel, payload).status_code == 200
    assert InboundEvent.objects.count() == 1
    drain(channel)
    # A new delivery carrying the same message again (in another batch) adds no message.
    payload["entry"].append(whatsapp_text(channel, wamid="wamid.R2")["entry"][0])
    assert meta_post(client, channel, payload).status_code == 200
    assert InboundEvent.objects.count() == 2
    drain(channel)
    assert Message.objects.filter(provider_message_id="wamid.R1").count() == 1
    assert Message.objects.filter(provider_message_id="wamid.R2").count() == 1


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"object": "page"}', b"\xff\xfe"])
def test_malformed_signed_body_is_400(
    client: Client, meta_channel: Callable[..., MetaChannel], body: bytes
) -> None:
    channel = meta_channel()
    response = meta_post(client, channel, body)
    assert response.status_code == 400
    assert not InboundEvent.objects.exists()


def test_oversize_body_is_413_before_anything(
    client: Client, meta_channel: Callable[..., MetaChannel], settings: Any
) -> None:
    settings.WEBHOOK_MAX_BODY_BYTES = 2048
    channel = meta_channel()
    payload = whatsapp_text(channel, wamid="wamid.BIG", text="x" * 4096)
    response = meta_post(client, channel, payload)
    assert response.status_code == 413
    assert not InboundEvent.objects.exists()
    # Just under the limit still goes through.
    assert (
        meta_post(client, channel, whatsapp_text(channel, wamid="wamid.SMALL", text="x" * 100)).status_code
        == 200
    )


def test_chunked_oversize_body_is_413(meta_channel: Callable[..., MetaChannel], settings: Any) -> None:
    """A body that declares no length is read only up to the limit."""
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    channel = meta_channel()
    body = json.dumps(whatsapp_text(channel, wamid="wamid.CHUNK", text="y" * 5000)).encode()
    request = RequestFactory().post(
        channel.webhook_path(),
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=meta_signature(body),
    )
    del request.META["CONTENT_LENGTH"]
    assert webhook(request, provider_name="meta", channel_id=channel.pk).status_code == 413
    assert not InboundEvent.objects.exists()


def test_only_post_and_get(client: Client, meta_channel: Callable[..., MetaChannel]) -> None:
    channel = meta_channel()
    assert client.put(channel.webhook_path(), data=b"{}").status_code == 405
    assert client.delete(channel.webhook_path()).status_code == 405


def test_hooks_need_no_session_but_other_pages_still_do(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    assert meta_post(client, channel, whatsapp_text(channel, wamid="wamid.S1")).status_code == 200
    assert client.get("/").status_code == 302


# --- Subscription (GET hub.challenge) ---------------------------------------------------


def test_subscription_echoes_the_challenge_with_the_verify_token(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    response = client.get(channel.webhook_path(), params)
    assert response.status_code == 200 and response.content == b"1158201444"
    assert response["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "<script>"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
    ],
)
def test_subscription_refused(
    client: Client, meta_channel: Callable[..., MetaChannel], params: dict[str, str]
) -> None:
    channel = meta_channel(verification_mode=VerificationMode.MONITOR)
    response = client.get(channel.webhook_path(), params)
    assert response.status_code == 403
    assert len(refused_events()) == 1


# --- Monitor mode -----------------------------------------------------------------------


def test_monitor_mode_accepts_and_records(client: Client, meta_channel: Callable[..., MetaChannel]) -> None:
    channel = meta_channel(verification_mode=VerificationMode.MONITOR)
    payload = whatsapp_text(channel, wamid="wamid.M1")
    response = meta_post(client, channel, payload, signature=meta_signature(b"other body"))
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert not event.verified and "does not match" in event.verification_note
    [warning] = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.WEBHOOK_UNVERIFIED)
    assert warning.severity == SecurityEvent.Severity.WARNING and warning.detail["mode"] == "monitor"
    assert not refused_events()
    # A well-signed delivery in monitor mode is just verified.
    assert meta_post(client, channel, whatsapp_text(channel, wamid="wamid.M2")).status_code == 200
    assert InboundEvent.objects.filter(verified=True).count() == 1
    # Malformed stays malformed.
    assert meta_post(client, channel, b"nope", signature="sha256=00").status_code == 400


# --- Processing -------------------------------------------------------------------------


def test_whatsapp_text_becomes_a_message_in_the_channel_inbox_only(
    client: Client, meta_channel: Callable[..., MetaChannel], make_user: Callable[..., Any]
) -> None:
    channel = meta_channel()
    other = meta_channel()
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.P1", text="Where is my parcel?"))
    # Signed by our app but for the other phone number: kept, never routed elsewhere.
    meta_post(client, channel, whatsapp_text(other, wamid="wamid.P2", text="for the other number"))
    drain(channel)

    conversation = Conversation.objects.get()
    assert conversation.inbox_id == channel.inbox_id
    message = conversation.messages.get()
    assert message.text == "Where is my parcel?" and message.provider_message_id == "wamid.P1"
    assert message.sender_name == "Sheena Nelson" and message.direction == Message.Direction.INBOUND
    identity = conversation.contact.identities.get()
    assert (identity.channel_kind, identity.handle) == (ChannelKind.WHATSAPP, "15551234567")
    assert not Conversation.objects.filter(inbox=other.inbox).exists()
    first, second = InboundEvent.objects.order_by("pk")
    assert first.status == InboundEvent.Status.PROCESSED
    assert second.status == InboundEvent.Status.IGNORED and "another WhatsApp phone number" in second.reason

    # Segment isolation through the policy: the other inbox's agent sees nothing of it.
    outsider = make_user("Agent")
    grant_inbox(other.inbox, outsider)
    assert not policy.visible_conversations(ctx(outsider)).exists()
    insider = make_user("Agent")
    grant_inbox(channel.inbox, insider)
    assert list(policy.visible_conversations(ctx(insider))) == [conversation]


def test_processing_is_idempotent_and_continues_the_open_conversation(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.I1", text="one"))
    drain(channel)
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.I2", text="two"))
    assert drain(channel) == 1
    # Running again finds nothing left to do.
    assert drain(channel) == 0
    conversation = Conversation.objects.get()
    assert list(conversation.messages.order_by("pk").values_list("text", flat=True)) == ["one", "two"]


@pytest.mark.parametrize("kind", [ChannelKind.MESSENGER, ChannelKind.INSTAGRAM])
def test_messenger_and_instagram_text(
    client: Client, meta_channel: Callable[..., MetaChannel], kind: str
) -> None:
    channel = meta_channel(kind)
    assert meta_post(client, channel, messaging_text(channel, mid="m_abc", text="Bonjour")).status_code == 200
    drain(channel)
    message = Message.objects.get()
    assert (
        message.inbox_id == channel.inbox_id
        and message.text == "Bonjour"
        and message.provider_message_id == "m_abc"
    )
    assert message.conversation.contact.identities.get().channel_kind == kind


def test_delivery_of_another_object_kind_is_kept_and_ignored(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel(ChannelKind.MESSENGER)
    instagram_shaped = messaging_text(channel, mid="m_ig")
    instagram_shaped["object"] = "instagram"
    meta_post(client, channel, instagram_shaped)
    drain(channel)
    assert not Message.objects.exists()
    assert InboundEvent.objects.get().status == InboundEvent.Status.IGNORED


def test_unknown_event_kinds_are_kept_and_marked(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    payload = whatsapp_text(channel, wamid="wamid.U1")
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"][0] = {
        "from": "15551234567",
        "id": "wamid.U1",
        "type": "reaction",
        "reaction": {"emoji": "👍"},
    }
    payload["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}})
    meta_post(client, channel, payload)
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.U2", text="after"))
    drain(channel)
    unknown, after = InboundEvent.objects.order_by("pk")
    assert unknown.status == InboundEvent.Status.IGNORED
    assert "'reaction' message" in unknown.reason and "'account_update' change" in unknown.reason
    # The queue went on past it.
    assert after.status == InboundEvent.Status.PROCESSED
    assert Message.objects.get().text == "after"


def test_whatsapp_image_is_fetched_into_an_attachment(
    client: Client, meta_channel: Callable[..., MetaChannel], httpserver: HTTPServer
) -> None:
    channel = meta_channel()
    auth = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    httpserver.expect_request("/778899", method="GET", headers=auth).respond_with_json(
        {
            "messaging_product": "whatsapp",
            "url": httpserver.url_for("/lookaside/778899"),
            "mime_type": "image/png",
            "sha256": hashlib.sha256(PNG).hexdigest(),
            "file_size": len(PNG),
            "id": "778899",
        }
    )
    httpserver.expect_request("/lookaside/778899", method="GET", headers=auth).respond_with_data(
        PNG, content_type="image/png"
    )
    payload = whatsapp_text(channel, wamid="wamid.IMG")
    payload["entry"][0]["changes"][0]["value"]["messages"][0] = {
        "from": "15551234567",
        "id": "wamid.IMG",
        "type": "image",
        "image": {"id": "778899", "mime_type": "image/png", "caption": "the damage"},
    }
    meta_post(client, channel, payload)
    drain(channel)
    message = Message.objects.get()
    assert message.text == "the damage"
    attachment = Attachment.objects.get(message=message)
    assert attachment.sha256 == hashlib.sha256(PNG).hexdigest()
    assert attachment.content_type == "image/png" and attachment.size == len(PNG)
    assert attachment.file.read() == PNG


def test_media_too_large_or_of_a_refused_type_is_noted(
    client: Client, meta_channel: Callable[..., MetaChannel], httpserver: HTTPServer, settings: Any
) -> None:
    settings.SOCIAL_MEDIA_MAX_BYTES = 1000
    channel = meta_channel(ChannelKind.MESSENGER)
    httpserver.expect_request("/cdn/big").respond_with_data(b"\x00" * 5000, content_type="image/jpeg")
    httpserver.expect_request("/cdn/exe").respond_with_data(
        b"MZ\x90\x00" + b"\x00" * 200, content_type="image/png"
    )
    payload = messaging_text(channel, mid="m_media", text="files")
    payload["entry"][0]["messaging"][0]["message"]["attachments"] = [
        {"type": "image", "payload": {"url": httpserver.url_for("/cdn/big")}},
        {"type": "file", "payload": {"url": httpserver.url_for("/cdn/exe")}},
    ]
    meta_post(client, channel, payload)
    drain(channel)
    message = Message.objects.get()
    assert not message.attachments.exists()
    assert "not fetched: larger than the 1,000-byte limit" in message.text
    assert "was not kept: that type is not accepted" in message.text


def test_media_from_a_forbidden_network_is_not_fetched(
    client: Client, meta_channel: Callable[..., MetaChannel], settings: Any
) -> None:
    channel = meta_channel(ChannelKind.MESSENGER)
    payload = messaging_text(channel, mid="m_ssrf", text="look")
    payload["entry"][0]["messaging"][0]["message"]["attachments"] = [
        {"type": "image", "payload": {"url": "http://169.254.169.254/latest/meta-data/"}},
        {"type": "image", "payload": {"url": "http://10.0.0.1/secret.png"}},
    ]
    meta_post(client, channel, payload)
    drain(channel)
    message = Message.objects.get()
    assert not message.attachments.exists()
    assert message.text.count("could not be fetched") == 2


def test_provider_down_while_fetching_media_retries_then_stores_the_message(
    client: Client, meta_channel: Callable[..., MetaChannel], httpserver: HTTPServer
) -> None:
    channel = meta_channel(ChannelKind.MESSENGER)
    calls: list[int] = []

    def flaky(request: Request) -> Response:
        calls.append(1)
        return Response(b"down", status=503) if len(calls) == 1 else Response(PNG, content_type="image/png")

    httpserver.expect_request("/cdn/flaky").respond_with_handler(flaky)
    payload = messaging_text(channel, mid="m_flaky", text="pic")
    payload["entry"][0]["messaging"][0]["message"]["attachments"] = [
        {"type": "image", "payload": {"url": httpserver.url_for("/cdn/flaky")}}
    ]
    meta_post(client, channel, payload)
    assert drain(channel) == 0
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.RECEIVED and event.attempts == 1
    assert event.next_attempt_at is not None and "HTTP 503" in event.reason
    assert not Message.objects.exists()
    # Not due yet: nothing happens; once due, it goes through.
    assert drain(channel) == 0 and len(calls) == 1
    assert drain(channel, now=event.next_attempt_at) == 1
    assert Message.objects.get().attachments.count() == 1


def test_event_that_keeps_failing_is_marked_failed(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.K1"))
    event = InboundEvent.objects.get()
    InboundEvent.objects.filter(pk=event.pk).update(attempts=social_services.MAX_PROCESS_ATTEMPTS + 1)
    drain(channel)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.FAILED and "never finished" in event.reason
    assert not Message.objects.exists()


def test_disabled_channel_events_are_failed_not_processed(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.X1"))
    MetaChannel.objects.filter(pk=channel.pk).update(enabled=False)
    drain(channel)
    event = InboundEvent.objects.get()
    assert event.status == InboundEvent.Status.FAILED and "disabled" in event.reason
    assert not Message.objects.exists()
    MetaChannel.objects.filter(pk=channel.pk).update(enabled=True)
    assert social_services.inbound_events_retry(ids=[event.pk]) == 1
    drain(channel)
    assert Message.objects.get().provider_message_id == "wamid.X1"


# --- Draining ---------------------------------------------------------------------------


def test_a_bad_event_fails_alone_and_order_is_kept(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.O1", text="first"))
    # Hostile: a sender longer than any handle column holds; the database refuses it.
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.O2", sender="1" * 400, text="bad"))
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.O3", text="third"))
    assert drain(channel) == 2
    statuses = list(InboundEvent.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == [
        InboundEvent.Status.PROCESSED,
        InboundEvent.Status.FAILED,
        InboundEvent.Status.PROCESSED,
    ]
    assert "database refused" in InboundEvent.objects.get(event_key="wamid:wamid.O2").reason
    assert list(Message.objects.order_by("pk").values_list("text", flat=True)) == ["first", "third"]


def test_an_event_tried_before_is_drained_alone(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    for i in range(3):
        meta_post(client, channel, whatsapp_text(channel, wamid=f"wamid.A{i}", text=str(i)))
    first = InboundEvent.objects.order_by("pk").first()
    assert first is not None
    InboundEvent.objects.filter(pk=first.pk).update(attempts=2)  # a worker died on it twice
    result = social_services.inbound_events_drain(channel_id=channel.pk)
    assert result.processed == 1 and result.more
    assert InboundEvent.objects.filter(status=InboundEvent.Status.RECEIVED).count() == 2
    assert drain(channel) == 2


def test_a_stored_delivery_queues_one_drain_per_channel(
    client: Client,
    meta_channel: Callable[..., MetaChannel],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    channel = meta_channel()
    key = f"channels_app:drain-queued:{channel.pk}"
    cache.delete(key)
    with django_capture_on_commit_callbacks() as callbacks:
        meta_post(client, channel, whatsapp_text(channel, wamid="wamid.Q1"))
    assert len(callbacks) == 1
    callbacks[0]()
    assert cache.get(key) == 1  # queued: a second delivery now only stores
    social_services.inbound_events_drain_started(channel_id=channel.pk)
    assert cache.get(key) is None
    drain(channel)


def test_a_drain_starting_within_the_interval_of_the_last_waits_and_keeps_the_queued_mark(
    meta_channel: Callable[..., MetaChannel],
) -> None:
    channel = meta_channel()
    queued = f"channels_app:drain-queued:{channel.pk}"
    cache.set(queued, 1, timeout=60)
    assert social_services.inbound_events_drain_started(channel_id=channel.pk) == 0
    assert cache.get(queued) is None  # it goes on: a delivery from now queues another
    cache.set(queued, 1, timeout=60)
    wait = social_services.inbound_events_drain_started(channel_id=channel.pk)
    assert 0 < wait <= social_services.DRAIN_INTERVAL_SECONDS
    # Still marked queued: deliveries while it waits queue nothing, it comes back for them.
    assert cache.get(queued) == 1
    cache.delete(queued)


def test_stalled_events_are_drained_again(client: Client, meta_channel: Callable[..., MetaChannel]) -> None:
    channel = meta_channel()
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.ST"))
    now = timezone.now()
    assert (
        social_selectors.channels_with_stalled_events(now=now, received_before=now - timedelta(minutes=5))
        == []
    )
    InboundEvent.objects.update(received_at=now - timedelta(minutes=10))
    assert social_selectors.channels_with_stalled_events(
        now=now, received_before=now - timedelta(minutes=5)
    ) == [channel.pk]
