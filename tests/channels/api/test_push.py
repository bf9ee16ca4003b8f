"""POST /api/v1/channels/<id>/messages: who may push (deny paths first), what is refused,
and that a push is stored once per integration message id."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts import roles
from channels_app.api.views import MAX_BODY_BYTES
from channels_app.models import ApiChannel, InboundEvent
from inbox.models import ChannelKind, Conversation, Message
from tests.channels.webhooks.conftest import api_message, api_push, drain, integration_token, make_inbox
from tests.conftest import start_session
from tests.inbox.conftest import grant_inbox

pytestmark = pytest.mark.django_db


def nothing_stored() -> bool:
    return not InboundEvent.objects.exists()


def test_no_token_is_401(client: Client, api_channel: Callable[..., ApiChannel]) -> None:
    response = api_push(client, api_channel(), api_message(), token=None)
    assert response.status_code == 401 and "detail" in response.json()
    assert nothing_stored()


def test_a_forged_token_is_401(client: Client, api_channel: Callable[..., ApiChannel]) -> None:
    assert (
        api_push(client, api_channel(), api_message(), token="pcl_" + "0" * 16 + "_" + "x" * 40).status_code
        == 401
    )
    assert nothing_stored()


def test_another_inboxs_token_is_404_like_a_missing_channel(
    client: Client, api_channel: Callable[..., ApiChannel]
) -> None:
    channel = api_channel()
    other = make_inbox(ChannelKind.API)
    token = integration_token([other])
    assert api_push(client, channel, api_message(), token=token).status_code == 404
    missing = ApiChannel(pk=channel.pk + 1000)
    assert api_push(client, missing, api_message(), token=token).status_code == 404
    assert nothing_stored()


def test_a_token_whose_account_has_no_grant_is_404(
    client: Client, api_channel: Callable[..., ApiChannel]
) -> None:
    channel = api_channel()
    token = integration_token([channel.inbox], granted=False)
    assert api_push(client, channel, api_message(), token=token).status_code == 404
    assert nothing_stored()


def test_a_read_only_token_is_403(client: Client, api_channel: Callable[..., ApiChannel]) -> None:
    channel = api_channel()
    response = api_push(
        client, channel, api_message(), token=integration_token([channel.inbox], can_write=False)
    )
    assert response.status_code == 403 and response.json()["detail"]
    assert nothing_stored()


def test_an_agents_session_may_not_push_as_a_customer(
    client: Client, api_channel: Callable[..., ApiChannel], make_user: Any
) -> None:
    channel = api_channel()
    agent = make_user(roles.AGENT)
    grant_inbox(channel.inbox, agent)
    start_session(client, agent, verified=True)
    response = client.post(channel.messages_path(), data=api_message(), content_type="application/json")
    assert response.status_code == 403 and "API token" in response.json()["detail"]
    assert nothing_stored()


def test_a_disabled_channel_is_404(client: Client, api_channel: Callable[..., ApiChannel]) -> None:
    channel = api_channel(enabled=False)
    assert (
        api_push(client, channel, api_message(), token=integration_token([channel.inbox])).status_code == 404
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"sender": {"id": "c-1"}, "text": "Hi"}, "message_id"),
        ({**api_message(), "message_id": "has space"}, "message_id"),
        ({**api_message(), "sender": {"name": "Ada"}}, "sender.id"),
        ({**api_message(), "text": "   "}, "text"),
        ({**api_message(), "text": "nul\x00here"}, "text"),
        ({**api_message(), "text": "x" * 20_001}, "text"),
    ],
)
def test_a_bad_payload_is_400_with_the_field_named(
    client: Client, api_channel: Callable[..., ApiChannel], payload: dict[str, Any], field: str
) -> None:
    channel = api_channel()
    response = api_push(client, channel, payload, token=integration_token([channel.inbox]))
    assert response.status_code == 400
    assert response.json()["detail"].startswith(field), response.json()
    assert nothing_stored()


def test_a_body_that_is_not_json_is_refused(client: Client, api_channel: Callable[..., ApiChannel]) -> None:
    channel = api_channel()
    token = integration_token([channel.inbox])
    assert api_push(client, channel, b"{not json", token=token).status_code == 400
    response = client.post(
        channel.messages_path(), data=b"a=1", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 415
    assert nothing_stored()


def test_an_oversize_body_is_413(client: Client, api_channel: Callable[..., ApiChannel]) -> None:
    channel = api_channel()
    body = json.dumps({**api_message(), "padding": "x" * MAX_BODY_BYTES}).encode()
    assert api_push(client, channel, body, token=integration_token([channel.inbox])).status_code == 413
    assert nothing_stored()


def test_a_push_is_stored_once_and_becomes_the_customers_message(
    client: Client, api_channel: Callable[..., ApiChannel]
) -> None:
    channel = api_channel()
    token = integration_token([channel.inbox])
    first = api_push(client, channel, api_message(text="Where is my order?"), token=token)
    assert first.status_code == 202 and first.json() == {"message_id": "crm-msg-1", "duplicate": False}
    again = api_push(client, channel, api_message(text="Where is my order?"), token=token)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert InboundEvent.objects.filter(channel=channel).count() == 1
    drain(channel)
    message = Message.objects.get(inbox=channel.inbox)
    assert (message.text, message.sender_name, message.provider_message_id) == (
        "Where is my order?",
        "Ada",
        "crm-msg-1",
    )
    # Another integration's customer "customer-42" is someone else.
    other = api_channel()
    api_push(client, other, api_message(), token=integration_token([other.inbox]))
    drain(other)
    assert Conversation.objects.get(inbox=other.inbox).contact_id != message.conversation.contact_id
