"""Supervisors configure the widget in the admin; its secret stays encrypted and is shown once."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from accounts import roles
from channels_app.models import LiveChatChannel
from inbox.models import ChannelKind, Inbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def supervisor(make_user: Any, verified_client: Any, delegate_new_inboxes: Any) -> Client:
    user = make_user(roles.SUPERVISOR, is_staff=True)
    delegate_new_inboxes(user)
    return verified_client(user)


def test_supervisor_creates_a_channel_and_sees_the_snippet_and_secret_once(supervisor: Client) -> None:
    inbox = Inbox.objects.create(name="Chat", channel_kind=ChannelKind.LIVECHAT)
    response = supervisor.post(
        "/admin/channels_app/livechatchannel/add/",
        {
            "inbox": inbox.pk,
            "enabled": "on",
            "allowed_origins": "https://WWW.Example.com:443/\nhttp://localhost:8001",
            "prechat_name": "optional",
            "prechat_email": "off",
            "welcome_text": "Hello",
            "offline_form": "on",
            "offline_text": "Offline",
        },
        follow=True,
    )
    assert response.status_code == 200
    channel = LiveChatChannel.objects.get(inbox=inbox)
    assert channel.allowed_origins == "https://www.example.com\nhttp://localhost:8001"
    shown = [str(m) for m in response.context["messages"]]
    assert any(channel.identity_secret in m and "shown once" in m for m in shown)

    page = html.unescape(
        supervisor.get(f"/admin/channels_app/livechatchannel/{channel.pk}/change/").content.decode()
    )
    assert f'data-portcullis-key="{channel.key}"' in page
    assert "http://testserver/static/widget/portcullis-widget.js" in page
    assert channel.identity_secret not in page

    with connection.cursor() as cursor:
        cursor.execute("SELECT identity_secret FROM channels_app_livechatchannel WHERE id = %s", [channel.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and channel.identity_secret not in stored


@pytest.mark.parametrize(
    "origins",
    [
        "",
        "*",
        "https://*.example.com",
        "ftp://example.com",
        "https://example.com/path",
        "https://user:pw@example.com",
        "example.com",
        "https://exämple.com",
        "https://example.com:99999",
    ],
)
def test_bad_origins_are_form_errors(supervisor: Client, origins: str) -> None:
    inbox = Inbox.objects.create(name="Chat", channel_kind=ChannelKind.LIVECHAT)
    response = supervisor.post(
        "/admin/channels_app/livechatchannel/add/",
        {
            "inbox": inbox.pk,
            "allowed_origins": origins,
            "prechat_name": "off",
            "prechat_email": "off",
            "welcome_text": "x",
            "offline_text": "y",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["allowed_origins"]
    assert not LiveChatChannel.objects.exists()


def test_only_a_live_chat_inbox_can_be_chosen(supervisor: Client) -> None:
    email = Inbox.objects.create(name="Mail", channel_kind=ChannelKind.EMAIL)
    response = supervisor.post(
        "/admin/channels_app/livechatchannel/add/",
        {
            "inbox": email.pk,
            "allowed_origins": "https://example.com",
            "prechat_name": "off",
            "prechat_email": "off",
            "welcome_text": "x",
            "offline_text": "y",
        },
    )
    assert response.context["adminform"].form.errors["inbox"]


def test_issuing_a_new_secret_shows_it_once(supervisor: Client) -> None:
    inbox = Inbox.objects.create(name="Chat", channel_kind=ChannelKind.LIVECHAT)
    channel = LiveChatChannel.objects.create(inbox=inbox, allowed_origins="https://example.com")
    old = channel.identity_secret
    response = supervisor.post(
        "/admin/channels_app/livechatchannel/",
        {"action": "issue_identity_secret", "_selected_action": [channel.pk]},
        follow=True,
    )
    channel.refresh_from_db()
    assert channel.identity_secret != old
    assert any(channel.identity_secret in str(m) for m in response.context["messages"])


def test_agents_cannot_open_the_channel_admin(make_user: Any, verified_client: Any) -> None:
    agent = verified_client(make_user(roles.AGENT, is_staff=True))
    assert agent.get("/admin/channels_app/livechatchannel/").status_code == 403
