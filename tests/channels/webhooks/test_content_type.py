"""Every provider posts one documented content type (Meta and Telegram JSON, Twilio a
form). Anything else is answered 415 before the channel is looked up, the body read or
the signature checked: the same answer signed or not, for any channel, nothing stored."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client

from audit.models import SecurityEvent
from channels_app.models import InboundEvent, SocialChannel
from tests.channels.webhooks.conftest import (
    ACCOUNT_SID,
    PHONE,
    meta_post,
    telegram_post,
    telegram_update,
    twilio_post,
    whatsapp_text,
)

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Provider:
    name: str
    documented: str
    # Another provider's type: the likeliest mistake in a misconfigured proxy or a probe.
    other: str
    channel_fixture: str
    post: Callable[..., HttpResponse]


def _meta(client: Client, channel: Any, *, signed: bool, content_type: str) -> HttpResponse:
    payload = whatsapp_text(channel, wamid="wamid.CT1")
    signature = None if signed else "sha256=" + "0" * 64
    return meta_post(client, channel, payload, signature=signature, content_type=content_type)


def _telegram(client: Client, channel: Any, *, signed: bool, content_type: str) -> HttpResponse:
    secret = {} if signed else {"secret": "not-the-secret"}
    return telegram_post(client, channel, telegram_update(7001), content_type=content_type, **secret)


def _twilio(client: Client, channel: Any, *, signed: bool, content_type: str) -> HttpResponse:
    params = {"MessageSid": "SM" + "5" * 32, "AccountSid": ACCOUNT_SID, "From": "+15557654321", "To": PHONE}
    token = {} if signed else {"token": "not-the-auth-token"}
    return twilio_post(client, channel, "sms", params, content_type=content_type, **token)


JSON, FORM = "application/json", "application/x-www-form-urlencoded"
PROVIDERS = [
    Provider("meta", JSON, FORM, "meta_channel", _meta),
    Provider("telegram", JSON, FORM, "telegram_channel", _telegram),
    Provider("twilio", FORM, JSON, "twilio_channel", _twilio),
]


@pytest.fixture(params=PROVIDERS, ids=lambda provider: provider.name)
def provider(request: pytest.FixtureRequest) -> tuple[Provider, SocialChannel]:
    chosen: Provider = request.param
    return chosen, request.getfixturevalue(chosen.channel_fixture)()


def refusals() -> int:
    return SecurityEvent.objects.filter(kind=SecurityEvent.Kind.WEBHOOK_REFUSED).count()


@pytest.mark.parametrize(
    ("right_type", "signed", "status"),
    [(True, True, 200), (True, False, 403), (False, True, 415), (False, False, 415)],
    ids=["right-signed", "right-unsigned", "wrong-signed", "wrong-unsigned"],
)
def test_type_is_checked_before_the_signature(
    client: Client,
    provider: tuple[Provider, SocialChannel],
    right_type: bool,
    signed: bool,
    status: int,
) -> None:
    chosen, channel = provider
    content_type = chosen.documented if right_type else chosen.other
    response = chosen.post(client, channel, signed=signed, content_type=content_type)
    assert response.status_code == status
    assert InboundEvent.objects.count() == (1 if status == 200 else 0)
    # Only a refused signature writes a row; a wrong type is refused before it is proven.
    assert refusals() == (1 if status == 403 else 0)


@pytest.mark.parametrize("given", ["other", "text/plain", "multipart/form-data; boundary=x", ""])
def test_signed_delivery_of_another_type_is_415_with_the_expected_type(
    client: Client, provider: tuple[Provider, SocialChannel], given: str, caplog: pytest.LogCaptureFixture
) -> None:
    chosen, channel = provider
    content_type = chosen.other if given == "other" else given
    with caplog.at_level(logging.WARNING, logger="channels_app.social_services"):
        response = chosen.post(client, channel, signed=True, content_type=content_type)
    assert response.status_code == 415
    assert (
        response.content.decode() == f"Unsupported Media Type: this webhook accepts {chosen.documented} only."
    )
    assert not InboundEvent.objects.exists()
    assert not SecurityEvent.objects.exists()
    [record] = [r for r in caplog.records if hasattr(r, "webhook")]
    assert record.webhook["provider"] == chosen.name and record.webhook["channel_id"] == channel.pk
    assert chosen.documented in record.webhook["reason"] and record.webhook["ip_address"] == "127.0.0.1"


def test_the_answer_tells_nothing_about_channel_signature_or_size(
    client: Client, provider: tuple[Provider, SocialChannel], settings: Any
) -> None:
    chosen, channel = provider

    def answer(*, signed: bool) -> tuple[int, bytes]:
        response = chosen.post(client, channel, signed=signed, content_type=chosen.other)
        return response.status_code, response.content

    answers = {answer(signed=True), answer(signed=False)}
    type(channel).objects.filter(pk=channel.pk).update(enabled=False)
    answers.add(answer(signed=True))
    # Refused before the body is read: the size limit is never reached.
    settings.WEBHOOK_MAX_BODY_BYTES = 10
    answers.add(answer(signed=True))
    assert len(answers) == 1 and answers.pop()[0] == 415
    assert not InboundEvent.objects.exists() and not SecurityEvent.objects.exists()


def test_the_documented_type_is_matched_whatever_its_case_and_parameters(
    client: Client, provider: tuple[Provider, SocialChannel]
) -> None:
    chosen, channel = provider
    for content_type in (f"{chosen.documented}; charset=utf-8", chosen.documented.upper()):
        assert chosen.post(client, channel, signed=True, content_type=content_type).status_code == 200
    # The same delivery twice: stored once.
    assert InboundEvent.objects.count() == 1
