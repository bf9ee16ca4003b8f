"""The replay script of docs/social-channels.md: documented samples, signed with the
channel's secret, POSTed to a running server, end up as messages in its inbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from channels_app.models import CallRecord, InboundEvent, MetaChannel, TelegramChannel, TwilioChannel
from inbox.models import ChannelKind, Message
from tests.channels.conftest import wait_for
from tests.channels.webhooks.conftest import make_inbox

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_replayed_samples_reach_the_inbox(
    live_server: Any,
    meta_channel: Callable[..., MetaChannel],
    telegram_channel: Callable[..., TelegramChannel],
    twilio_channel: Callable[..., TwilioChannel],
) -> None:
    whatsapp = meta_channel()
    messenger = meta_channel(ChannelKind.MESSENGER)
    bot = telegram_channel()
    phone = twilio_channel(inbox=make_inbox(ChannelKind.VOICE), public_base_url=live_server.url)
    for channel in (whatsapp, messenger, bot, phone):
        call_command("replay_webhook", str(channel.pk), url=live_server.url, text=f"Hello {channel.pk}")
    call_command("replay_webhook", str(phone.pk), url=live_server.url, sample="twilio-voice")

    for channel in (whatsapp, messenger, bot):
        message = wait_for(lambda channel=channel: Message.objects.filter(inbox=channel.inbox).first())
        assert message.text == f"Hello {channel.pk}"
    wait_for(lambda: Message.objects.filter(inbox=phone.inbox).count() == 2)
    assert CallRecord.objects.get().caller == "+15557654321"
    assert not InboundEvent.objects.filter(verified=False).exists()


def test_a_replayed_id_is_stored_once(live_server: Any, meta_channel: Callable[..., MetaChannel]) -> None:
    channel = meta_channel()
    for _ in range(2):
        call_command("replay_webhook", str(channel.pk), url=live_server.url, message_id="wamid.SAME")
    wait_for(lambda: Message.objects.filter(provider_message_id="wamid.SAME").exists())
    assert InboundEvent.objects.count() == 1


def test_a_refused_replay_fails_loudly(live_server: Any, meta_channel: Callable[..., MetaChannel]) -> None:
    channel = meta_channel()
    MetaChannel.objects.filter(pk=channel.pk).update(enabled=False)
    with pytest.raises(CommandError, match="refused"):
        call_command("replay_webhook", str(channel.pk), url=live_server.url)
    with pytest.raises(CommandError, match="No webhook channel"):
        call_command("replay_webhook", "999999", url=live_server.url)
