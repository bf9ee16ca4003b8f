"""Supervisors configure the channels in the admin: secrets write-only and encrypted at
rest, monitor mode flagged, received events listed in constant queries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pytest_httpserver import HTTPServer

from accounts import roles
from audit.models import SecurityEvent
from channels_app.models import InboundEvent, MetaChannel, TelegramChannel, TelegramMode, VerificationMode
from channels_app.webhooks import services as social_services
from inbox.models import ChannelKind
from tests.channels.webhooks.conftest import (
    APP_SECRET,
    BOT_TOKEN,
    WEBHOOK_SECRET,
    drain,
    make_inbox,
    meta_post,
    whatsapp_status,
    whatsapp_text,
)
from tests.inbox.conftest import grant_inbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def supervisor(make_user: Callable[..., Any], delegate_new_inboxes: Any) -> Any:
    user = make_user(roles.SUPERVISOR, is_staff=True)
    delegate_new_inboxes(user)
    return user


@pytest.fixture
def supervisor_client(supervisor: Any, verified_client: Callable[[Any], Client]) -> Client:
    return verified_client(supervisor)


def raw_column(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE socialchannel_ptr_id = %s", [pk])  # noqa: S608
        return str(cursor.fetchone()[0])


def meta_form(inbox_id: int, **overrides: str) -> dict[str, str]:
    return {
        "inbox": str(inbox_id),
        "kind": ChannelKind.WHATSAPP,
        "account_id": "106540352242922",
        "enabled": "on",
        "verification_mode": VerificationMode.ENFORCE,
        "app_secret": "typed-app-secret",
        "verify_token": "typed-verify-token",
        "access_token": "typed-access-token",
        "public_base_url": "",
        "api_base_url": "",
        **overrides,
    }


def test_supervisor_adds_a_whatsapp_channel_with_secrets_encrypted(supervisor_client: Client) -> None:
    inbox = make_inbox(ChannelKind.WHATSAPP)
    response = supervisor_client.post("/admin/channels_app/metachannel/add/", meta_form(inbox.pk))
    assert response.status_code == 302, response.content.decode()[-2000:]
    channel = MetaChannel.objects.get()
    assert channel.app_secret == "typed-app-secret" and channel.provider == "meta"
    for column in ("app_secret", "verify_token", "access_token"):
        stored = raw_column("channels_app_metachannel", column, channel.pk)
        assert stored.startswith("fernet:") and "typed" not in stored

    page = supervisor_client.get(f"/admin/channels_app/metachannel/{channel.pk}/change/").content.decode()
    assert (
        "typed-app-secret" not in page
        and "typed-verify-token" not in page
        and "typed-access-token" not in page
    )
    assert f"/hooks/meta/{channel.pk}/" in page

    # Saving with the secret fields left empty keeps them.
    response = supervisor_client.post(
        f"/admin/channels_app/metachannel/{channel.pk}/change/",
        meta_form(inbox.pk, app_secret="", verify_token="", access_token="new-access-token"),
    )
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.app_secret == "typed-app-secret" and channel.access_token == "new-access-token"


def test_secrets_are_required_for_a_new_channel(supervisor_client: Client) -> None:
    inbox = make_inbox(ChannelKind.WHATSAPP)
    response = supervisor_client.post(
        "/admin/channels_app/metachannel/add/", meta_form(inbox.pk, app_secret="")
    )
    assert response.status_code == 200 and not MetaChannel.objects.exists()


def test_inbox_of_the_wrong_kind_is_refused(supervisor_client: Client) -> None:
    inbox = make_inbox(ChannelKind.TELEGRAM)
    response = supervisor_client.post("/admin/channels_app/metachannel/add/", meta_form(inbox.pk))
    assert response.status_code == 200 and "Pick an inbox of kind" in response.content.decode()
    assert not MetaChannel.objects.exists()


def test_api_base_url_into_the_internal_network_is_refused(supervisor_client: Client, settings: Any) -> None:
    settings.CHANNEL_ALLOW_PRIVATE_HOSTS = []
    inbox = make_inbox(ChannelKind.WHATSAPP)
    for url in ("http://127.0.0.1:9000", "https://10.1.2.3", "https://169.254.169.254"):
        response = supervisor_client.post(
            "/admin/channels_app/metachannel/add/", meta_form(inbox.pk, api_base_url=url)
        )
        assert response.status_code == 200, url
    assert not MetaChannel.objects.exists()


def test_monitor_mode_is_a_warning_in_the_list_and_on_the_page(
    supervisor_client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    enforced = meta_channel()
    monitored = meta_channel(verification_mode=VerificationMode.MONITOR)
    listing = supervisor_client.get("/admin/channels_app/metachannel/").content.decode()
    assert "Some channels are in monitor mode" in listing
    assert listing.count("Monitor: unverified deliveries accepted") == 1
    page = supervisor_client.get(f"/admin/channels_app/metachannel/{monitored.pk}/change/").content.decode()
    assert "Monitor mode: deliveries that fail verification are accepted" in page
    page = supervisor_client.get(f"/admin/channels_app/metachannel/{enforced.pk}/change/").content.decode()
    assert "Monitor mode: deliveries" not in page


def test_no_monitor_warning_when_all_enforce(
    supervisor_client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    meta_channel()
    assert "monitor mode" not in supervisor_client.get("/admin/channels_app/metachannel/").content.decode()


def test_telegram_secrets_write_only_and_register_action(
    supervisor_client: Client, telegram_channel: Callable[..., TelegramChannel], httpserver: HTTPServer
) -> None:
    channel = telegram_channel(mode=TelegramMode.PULL)
    page = supervisor_client.get(f"/admin/channels_app/telegramchannel/{channel.pk}/change/").content.decode()
    assert BOT_TOKEN not in page and WEBHOOK_SECRET not in page
    httpserver.expect_oneshot_request(f"/bot{BOT_TOKEN}/setWebhook").respond_with_json(
        {"ok": True, "result": True}
    )
    response = supervisor_client.post(
        "/admin/channels_app/telegramchannel/",
        {"action": "webhook_register", "_selected_action": [str(channel.pk)]},
        follow=True,
    )
    assert "Telegram now delivers to https://inbox.example.com/hooks/telegram/" in response.content.decode()
    assert BOT_TOKEN not in response.content.decode()
    channel.refresh_from_db()
    assert channel.mode == TelegramMode.PUSH


def test_inbound_event_list_in_constant_queries(
    supervisor: Any, supervisor_client: Client, client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    grant_inbox(channel.inbox, supervisor, perms=("view_inbox",))

    def listing_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = supervisor_client.get("/admin/channels_app/inboundevent/")
            assert response.status_code == 200
        assert response.context["cl"].result_count == InboundEvent.objects.count()
        return len(queries)

    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.L0"))
    listing_queries()  # warm: the policy looks its permission ids up once per process
    few = listing_queries()
    for i in range(1, 15):
        meta_post(client, channel, whatsapp_text(channel, wamid=f"wamid.L{i}"))
    assert InboundEvent.objects.count() == 15
    assert listing_queries() == few


def test_inbound_events_are_listed_only_for_the_viewers_inboxes(
    supervisor: Any, supervisor_client: Client, client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    seen, unseen = meta_channel(), meta_channel()
    grant_inbox(seen.inbox, supervisor, perms=("view_inbox",))
    meta_post(client, seen, whatsapp_text(seen, wamid="wamid.S0"))
    meta_post(client, unseen, whatsapp_text(unseen, wamid="wamid.U0"))
    response = supervisor_client.get("/admin/channels_app/inboundevent/")
    listed = {event.channel_id for event in response.context["cl"].result_list}
    assert listed == {seen.pk}
    other = InboundEvent.objects.get(channel=unseen)
    # Another segment's delivery is "not found", as its conversations are.
    assert supervisor_client.get(f"/admin/channels_app/inboundevent/{other.pk}/change/").status_code == 302


def test_an_ignored_status_shows_why_in_the_event_list(
    supervisor: Any, supervisor_client: Client, client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    grant_inbox(channel.inbox, supervisor, perms=("view_inbox",))
    meta_post(client, channel, whatsapp_status(channel, wamid="wamid.GHOST", status="read"))
    # Its last try: the ones before only waited for a reply that never came.
    InboundEvent.objects.update(attempts=social_services.UNKNOWN_STATUS_TRIES - 1)
    drain(channel)
    response = supervisor_client.get("/admin/channels_app/inboundevent/?status=ignored")
    [listed] = response.context["cl"].result_list
    assert listed.status == InboundEvent.Status.IGNORED
    assert "Ignored: a read status for a message we never sent" in response.content.decode()


def test_channel_list_in_constant_queries(
    supervisor_client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    meta_channel()

    def listing_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert supervisor_client.get("/admin/channels_app/metachannel/").status_code == 200
        return len(queries)

    few = listing_queries()
    for _ in range(5):
        meta_channel()
    assert listing_queries() == few


def test_event_body_is_never_added_or_deleted_by_hand(supervisor_client: Client) -> None:
    assert supervisor_client.get("/admin/channels_app/inboundevent/add/").status_code == 403


def test_agents_do_not_reach_channel_configuration(
    make_user: Callable[..., Any],
    verified_client: Callable[[Any], Client],
    meta_channel: Callable[..., MetaChannel],
) -> None:
    channel = meta_channel()
    agent = verified_client(make_user(roles.AGENT, is_staff=True))
    assert agent.get(f"/admin/channels_app/metachannel/{channel.pk}/change/").status_code in {302, 403}
    assert agent.get("/admin/channels_app/inboundevent/").status_code in {302, 403}


def test_app_secret_never_in_a_refusal_event(
    client: Client, meta_channel: Callable[..., MetaChannel]
) -> None:
    channel = meta_channel()
    meta_post(client, channel, whatsapp_text(channel, wamid="wamid.Z"), signature="sha256=" + "0" * 64)
    event = SecurityEvent.objects.get()
    assert APP_SECRET not in str(event.detail)
