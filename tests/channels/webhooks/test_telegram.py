"""Telegram: webhook secret token, update processing, getUpdates pull mode that resumes
from the right offset after a crash, webhook registration."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.test import Client
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from audit.models import SecurityEvent
from channels_app.common.provider_http import ProviderError
from channels_app.models import InboundEvent, TelegramChannel, TelegramMode, VerificationMode
from channels_app.webhooks.providers.telegram import services as telegram_services
from channels_app.webhooks.providers.telegram import tasks as telegram_tasks
from inbox.models import Attachment, ChannelKind, Message
from tests.channels.conftest import wait_for
from tests.channels.webhooks.conftest import BOT_TOKEN, WEBHOOK_SECRET, drain, telegram_post, telegram_update

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + b"\x00" * 64


@dataclass
class FakeBotApi:
    """getUpdates as Telegram documents it: every update at or above the requested offset
    is handed out again until a higher offset confirms it."""

    pending: list[dict[str, Any]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    # When set, getUpdates waits for it (a poll in flight while its worker is killed).
    hold: threading.Event | None = None
    holding: threading.Event = field(default_factory=threading.Event)

    def get_updates(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        offset = int(body.get("offset", 0))
        self.offsets.append(offset)
        if self.hold is not None:
            self.holding.set()
            self.hold.wait(timeout=30)
        self.pending = [update for update in self.pending if update["update_id"] >= offset]
        result = self.pending[: int(body.get("limit", 100))]
        return Response(json.dumps({"ok": True, "result": result}), content_type="application/json")


@pytest.fixture
def bot_api(httpserver: HTTPServer) -> FakeBotApi:
    api = FakeBotApi()
    httpserver.expect_request(f"/bot{BOT_TOKEN}/getUpdates", method="POST").respond_with_handler(
        api.get_updates
    )
    return api


# --- Webhook ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_update_with_the_secret_token_is_stored(
    client: Client, telegram_channel: Callable[..., TelegramChannel]
) -> None:
    channel = telegram_channel()
    assert telegram_post(client, channel, telegram_update(10)).status_code == 200
    event = InboundEvent.objects.get()
    assert event.event_key == "update:10" and event.verified


@pytest.mark.django_db
@pytest.mark.parametrize("secret", [None, "", "wrong", WEBHOOK_SECRET + "x", WEBHOOK_SECRET[:-1]])
def test_update_without_the_secret_token_is_refused(
    client: Client, telegram_channel: Callable[..., TelegramChannel], secret: str | None
) -> None:
    channel = telegram_channel()
    assert telegram_post(client, channel, telegram_update(10), secret=secret).status_code == 403
    assert not InboundEvent.objects.exists()
    [event] = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.WEBHOOK_REFUSED)
    assert event.detail["provider"] == "telegram" and WEBHOOK_SECRET not in json.dumps(event.detail)


@pytest.mark.django_db
def test_secret_of_another_bot_is_refused(
    client: Client, telegram_channel: Callable[..., TelegramChannel]
) -> None:
    channel = telegram_channel()
    other = telegram_channel(webhook_secret="other-bot-secret")
    assert telegram_post(client, channel, telegram_update(1), secret=other.webhook_secret).status_code == 403


@pytest.mark.django_db
def test_monitor_mode_accepts_a_wrong_secret_and_records_it(
    client: Client, telegram_channel: Callable[..., TelegramChannel]
) -> None:
    channel = telegram_channel(verification_mode=VerificationMode.MONITOR)
    assert telegram_post(client, channel, telegram_update(5), secret="old-secret").status_code == 200
    assert not InboundEvent.objects.get().verified
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.WEBHOOK_UNVERIFIED).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body", [b"not json", b'{"message": {}}', b'{"update_id": "7"}', b'{"update_id": true}', b"[]"]
)
def test_malformed_update_is_400(
    client: Client, telegram_channel: Callable[..., TelegramChannel], body: bytes
) -> None:
    channel = telegram_channel()
    assert telegram_post(client, channel, body).status_code == 400
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
def test_replayed_update_is_stored_once(
    client: Client, telegram_channel: Callable[..., TelegramChannel]
) -> None:
    channel = telegram_channel()
    for _ in range(3):
        assert telegram_post(client, channel, telegram_update(21)).status_code == 200
    assert InboundEvent.objects.count() == 1


@pytest.mark.django_db
def test_oversize_update_is_413(
    client: Client, telegram_channel: Callable[..., TelegramChannel], settings: Any
) -> None:
    settings.WEBHOOK_MAX_BODY_BYTES = 500
    channel = telegram_channel()
    assert telegram_post(client, channel, telegram_update(1, text="z" * 600)).status_code == 413
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
def test_message_update_becomes_a_message(
    client: Client, telegram_channel: Callable[..., TelegramChannel]
) -> None:
    channel = telegram_channel()
    telegram_post(client, channel, telegram_update(30, chat_id=555, text="My order?", message_id=9))
    telegram_post(client, channel, {"update_id": 31, "callback_query": {"id": "1", "data": "x"}})
    drain(channel)
    message = Message.objects.get()
    assert message.inbox_id == channel.inbox_id and message.text == "My order?"
    assert message.provider_message_id == "555:9" and message.sender_name == "Ada Lovelace"
    identity = message.conversation.contact.identities.get()
    assert (identity.channel_kind, identity.handle) == (ChannelKind.TELEGRAM, "555")
    ignored = InboundEvent.objects.get(event_key="update:31")
    assert ignored.status == InboundEvent.Status.IGNORED and "callback_query" in ignored.reason


@pytest.mark.django_db
def test_photo_is_fetched_with_get_file(
    client: Client, telegram_channel: Callable[..., TelegramChannel], httpserver: HTTPServer
) -> None:
    channel = telegram_channel()
    httpserver.expect_request(
        f"/bot{BOT_TOKEN}/getFile", method="POST", json={"file_id": "BIG"}
    ).respond_with_json(
        {
            "ok": True,
            "result": {
                "file_id": "BIG",
                "file_unique_id": "u",
                "file_size": len(JPEG),
                "file_path": "photos/file_7.jpg",
            },
        }
    )
    httpserver.expect_request(f"/file/bot{BOT_TOKEN}/photos/file_7.jpg").respond_with_data(JPEG)
    update = telegram_update(40)
    del update["message"]["text"]
    update["message"]["caption"] = "broken screen"
    update["message"]["photo"] = [
        {"file_id": "SMALL", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 10},
        {"file_id": "BIG", "file_unique_id": "b", "width": 800, "height": 800, "file_size": len(JPEG)},
    ]
    telegram_post(client, channel, update)
    drain(channel)
    message = Message.objects.get()
    assert message.text == "broken screen"
    attachment = Attachment.objects.get(message=message)
    assert attachment.content_type == "image/jpeg" and attachment.file.read() == JPEG


# --- Pull mode --------------------------------------------------------------------------


def pull_channel(
    telegram_channel: Callable[..., TelegramChannel], **fields: Any
) -> tuple[TelegramChannel, str]:
    channel = telegram_channel(mode=TelegramMode.PULL, **fields)
    [(channel_id, lease)] = telegram_services.telegram_polls_start()
    assert channel_id == channel.pk
    return channel, lease


@pytest.mark.django_db
def test_poll_stores_updates_and_advances_the_offset(
    telegram_channel: Callable[..., TelegramChannel], bot_api: FakeBotApi
) -> None:
    channel, lease = pull_channel(telegram_channel)
    bot_api.pending = [telegram_update(100), telegram_update(101), {"update_id": 102, "edited_message": {}}]
    result = telegram_services.telegram_poll(channel_id=channel.pk, lease=lease)
    assert result.stored == 3 and result.go_on
    channel.refresh_from_db()
    assert channel.update_offset == 103
    telegram_services.telegram_poll(channel_id=channel.pk, lease=lease)
    assert bot_api.offsets == [0, 103]
    drain(channel)
    assert Message.objects.count() == 2
    assert InboundEvent.objects.filter(status=InboundEvent.Status.IGNORED).count() == 1


@pytest.mark.django_db
def test_poll_resumes_from_the_right_offset_after_a_crash_while_storing(
    telegram_channel: Callable[..., TelegramChannel], bot_api: FakeBotApi
) -> None:
    channel, lease = pull_channel(telegram_channel)
    TelegramChannel.objects.filter(pk=channel.pk).update(update_offset=10)
    bot_api.pending = [telegram_update(10), telegram_update(11), telegram_update(12)]
    with connection.cursor() as cursor:
        # The database fails in the middle of storing the batch: as if the worker died there.
        cursor.execute(
            """
            CREATE FUNCTION crash_on_update_11() RETURNS trigger AS $$
            BEGIN
                IF NEW.event_key = 'update:11' THEN RAISE EXCEPTION 'simulated crash'; END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER crash BEFORE INSERT ON channels_app_inboundevent
                FOR EACH ROW EXECUTE FUNCTION crash_on_update_11();
            """
        )
    with pytest.raises(DatabaseError):
        telegram_services.telegram_poll(channel_id=channel.pk, lease=lease)
    channel.refresh_from_db()
    assert channel.update_offset == 10 and not InboundEvent.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER crash ON channels_app_inboundevent")

    telegram_services.telegram_poll(channel_id=channel.pk, lease=lease)
    telegram_services.telegram_poll(channel_id=channel.pk, lease=lease)
    assert bot_api.offsets == [10, 10, 13]
    assert sorted(InboundEvent.objects.values_list("event_key", flat=True)) == [
        "update:10",
        "update:11",
        "update:12",
    ]
    channel.refresh_from_db()
    assert channel.update_offset == 13


@pytest.mark.django_db
def test_poll_after_a_crash_past_the_commit_deduplicates(
    telegram_channel: Callable[..., TelegramChannel], bot_api: FakeBotApi
) -> None:
    """Telegram hands out again what a lost confirmation never confirmed: stored once."""
    channel, lease = pull_channel(telegram_channel)
    bot_api.pending = [telegram_update(50), telegram_update(51)]
    telegram_services.telegram_poll(channel_id=channel.pk, lease=lease)
    # The stored offset is lost to an old chain's write (or a restore): never backwards.
    TelegramChannel.objects.filter(pk=channel.pk).update(update_offset=50)
    telegram_services.telegram_poll(channel_id=channel.pk, lease=lease)
    assert InboundEvent.objects.count() == 2
    channel.refresh_from_db()
    assert channel.update_offset == 52


@pytest.fixture
def holding_api(bot_api: FakeBotApi) -> Iterator[FakeBotApi]:
    bot_api.hold = threading.Event()
    hold = bot_api.hold
    yield bot_api
    hold.set()


@pytest.mark.django_db(transaction=True)
def test_poll_resumes_after_its_worker_is_killed(
    telegram_channel: Callable[..., TelegramChannel], holding_api: FakeBotApi, settings: Any
) -> None:
    channel, lease = pull_channel(telegram_channel)
    TelegramChannel.objects.filter(pk=channel.pk).update(update_offset=7)
    holding_api.pending = [telegram_update(7), telegram_update(8)]
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "CHANNEL_ALLOW_PRIVATE_HOSTS": "127.0.0.1/32",
        "CHANNEL_ALLOW_PRIVATE_PORTS": ",".join(map(str, settings.CHANNEL_ALLOW_PRIVATE_PORTS)),
        "TELEGRAM_POLL_TIMEOUT_SECONDS": "0",
    }
    code = (
        "import django; django.setup(); "
        "from channels_app.webhooks.providers.telegram import services as telegram_services; "
        f"telegram_services.telegram_poll(channel_id={channel.pk}, lease={lease!r})"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        assert holding_api.holding.wait(timeout=30), "the worker never asked for updates"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    release, holding_api.hold = holding_api.hold, None
    assert release is not None
    release.set()
    channel.refresh_from_db()
    assert channel.update_offset == 7 and not InboundEvent.objects.exists()

    telegram_services.telegram_poll(channel_id=channel.pk, lease=lease)
    assert holding_api.offsets == [7, 7]
    assert InboundEvent.objects.count() == 2
    channel.refresh_from_db()
    assert channel.update_offset == 9


@pytest.mark.django_db
def test_one_poll_chain_per_channel(
    telegram_channel: Callable[..., TelegramChannel], bot_api: FakeBotApi
) -> None:
    channel, lease = pull_channel(telegram_channel)
    assert telegram_services.telegram_polls_start() == []  # the chain holds the lease
    stale = "0" * 32
    assert not telegram_services.telegram_poll(channel_id=channel.pk, lease=stale).go_on
    assert bot_api.offsets == []
    # A dead chain's lease runs out; the next beat tick starts a new one.
    TelegramChannel.objects.filter(pk=channel.pk).update(poll_lease_until=timezone.now())
    [(_, new_lease)] = telegram_services.telegram_polls_start()
    assert new_lease != lease
    assert not telegram_services.telegram_poll(channel_id=channel.pk, lease=lease).go_on


@pytest.mark.django_db
def test_push_mode_channel_is_never_polled(telegram_channel: Callable[..., TelegramChannel]) -> None:
    telegram_channel(mode=TelegramMode.PUSH)
    telegram_channel(mode=TelegramMode.PULL, enabled=False)
    assert telegram_services.telegram_polls_start() == []


@pytest.mark.django_db
def test_poll_refused_by_telegram_stops_the_chain(
    telegram_channel: Callable[..., TelegramChannel], httpserver: HTTPServer
) -> None:
    channel, lease = pull_channel(telegram_channel)
    httpserver.expect_request(f"/bot{BOT_TOKEN}/getUpdates").respond_with_json(
        {
            "ok": False,
            "error_code": 409,
            "description": "Conflict: can't use getUpdates method while webhook is active",
        },
        status=409,
    )
    with pytest.raises(ProviderError):
        telegram_services.telegram_poll(channel_id=channel.pk, lease=lease)
    channel.refresh_from_db()
    assert "webhook is active" in channel.last_error and BOT_TOKEN not in channel.last_error
    assert channel.poll_lease == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_poll_chain_on_the_worker(
    telegram_channel: Callable[..., TelegramChannel], bot_api: FakeBotApi
) -> None:
    channel = telegram_channel(mode=TelegramMode.PULL)
    bot_api.pending = [telegram_update(300, text="pulled")]
    telegram_tasks.telegram_poll_due.delay()
    message = wait_for(lambda: Message.objects.filter(inbox=channel.inbox).first())
    assert message.text == "pulled"
    # Switching to push ends the chain.
    TelegramChannel.objects.filter(pk=channel.pk).update(mode=TelegramMode.PUSH)
    wait_for(
        lambda: len(bot_api.offsets) > 0 and TelegramChannel.objects.get(pk=channel.pk).update_offset == 301
    )
    asked = len(bot_api.offsets)
    time.sleep(0.5)
    assert len(bot_api.offsets) <= asked + 1


# --- Webhook registration ---------------------------------------------------------------


@pytest.mark.django_db
def test_register_webhook_with_secret_token(
    telegram_channel: Callable[..., TelegramChannel], httpserver: HTTPServer
) -> None:
    channel = telegram_channel(mode=TelegramMode.PULL)
    httpserver.expect_oneshot_request(
        f"/bot{BOT_TOKEN}/setWebhook",
        method="POST",
        json={
            "url": f"https://inbox.example.com/hooks/telegram/{channel.pk}/",
            "secret_token": WEBHOOK_SECRET,
        },
    ).respond_with_json({"ok": True, "result": True, "description": "Webhook was set"})
    url = telegram_services.telegram_webhook_register(channel=channel)
    httpserver.check_assertions()
    assert url == f"https://inbox.example.com/hooks/telegram/{channel.pk}/"
    channel.refresh_from_db()
    assert channel.mode == TelegramMode.PUSH and channel.webhook_registered_at is not None

    httpserver.expect_oneshot_request(f"/bot{BOT_TOKEN}/deleteWebhook", method="POST").respond_with_json(
        {"ok": True, "result": True}
    )
    telegram_services.telegram_webhook_remove(channel=channel)
    channel.refresh_from_db()
    assert channel.mode == TelegramMode.PULL and channel.webhook_registered_at is None


@pytest.mark.django_db
def test_register_needs_an_https_public_url(
    telegram_channel: Callable[..., TelegramChannel], httpserver: HTTPServer
) -> None:
    channel = telegram_channel(public_base_url="http://127.0.0.1:8000")
    with pytest.raises(ProviderError, match="https"):
        telegram_services.telegram_webhook_register(channel=channel)
    assert not httpserver.log


@pytest.mark.django_db
def test_generated_webhook_secret(telegram_channel: Callable[..., TelegramChannel]) -> None:
    channel = telegram_channel(webhook_secret="")
    assert len(channel.webhook_secret) == 64
    assert re.fullmatch(r"[A-Za-z0-9_-]+", channel.webhook_secret)
