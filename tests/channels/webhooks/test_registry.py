"""Every provider in the registry keeps the contract, walked one by one: a forged delivery is
refused and stores nothing, a valid one is stored once, a replay is deduplicated, and an
agent's reply round-trips through the provider's local stand-in server.

A provider added to the registry without an entry here fails `test_every_provider_is_walked`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from channels_app.api import callbacks
from channels_app.common import outbound
from channels_app.models import InboundEvent, SocialChannel
from channels_app.webhooks.registry import PROVIDERS
from inbox.models import ChannelKind, Conversation, Message
from inbox.services import conversation_reply
from tests.channels.webhooks.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_TOKEN,
    CALLBACK_PATH,
    CALLBACK_SECRET,
    PHONE,
    api_message,
    api_push,
    drain,
    integration_token,
    meta_post,
    telegram_post,
    telegram_update,
    twilio_post,
    whatsapp_text,
)
from tests.inbox.conftest import ctx, grant_inbox

pytestmark = pytest.mark.django_db

CUSTOMER_PHONE = "+15557654321"


@dataclass(frozen=True)
class Walk:
    """How one provider's deliveries are made, and where its replies arrive."""

    make_channel: Callable[[], SocialChannel]
    # (client, channel, forged?) → the response
    deliver: Callable[[Client, SocialChannel, bool], Any]
    accepted: int
    # Expect the reply on the stand-in server; returns the provider id it will name.
    expect_reply: Callable[[HTTPServer, SocialChannel], str]


def _telegram_reply(server: HTTPServer, channel: Any) -> str:
    server.expect_oneshot_request(
        f"/bot{BOT_TOKEN}/sendMessage", method="POST", json={"chat_id": "4242", "text": "On it."}
    ).respond_with_json({"ok": True, "result": {"message_id": 9, "chat": {"id": 4242}, "date": 0}})
    return "4242:9"


def _meta_reply(server: HTTPServer, channel: Any) -> str:
    server.expect_oneshot_request(f"/{channel.account_id}/messages", method="POST").respond_with_json(
        {"messages": [{"id": "wamid.REPLY"}]}
    )
    return "wamid.REPLY"


def _twilio_reply(server: HTTPServer, channel: Any) -> str:
    server.expect_oneshot_request(
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", method="POST"
    ).respond_with_json({"sid": "SM" + "9" * 32})
    return "SM" + "9" * 32


def _api_reply(server: HTTPServer, channel: Any) -> str:
    def integration(request: Request) -> Response:
        # The stand-in integration checks what a real one must: signature and freshness.
        problem = callbacks.signature_problem(CALLBACK_SECRET, request.headers, request.get_data())
        if problem is not None:
            return Response(problem, status=401)
        body = json.loads(request.get_data())
        assert body["recipient"] == {"id": "customer-42"} and body["text"] == "On it."
        return Response(json.dumps({"id": "crm-reply-1"}), content_type="application/json")

    server.expect_oneshot_request(CALLBACK_PATH, method="POST").respond_with_handler(integration)
    return "crm-reply-1"


def _twilio_sms() -> dict[str, str]:
    return {"MessageSid": "SM" + "1" * 32, "AccountSid": ACCOUNT_SID, "From": CUSTOMER_PHONE, "To": PHONE}


def _walks(fixtures: dict[str, Any]) -> dict[str, Walk]:
    tokens: dict[int, str] = {}

    def api_deliver(client: Client, channel: Any, forged: bool) -> Any:
        if forged:
            return api_push(client, channel, api_message(), token=None)
        token = tokens.setdefault(channel.pk, integration_token([channel.inbox]))
        return api_push(client, channel, api_message(), token=token)

    return {
        "telegram": Walk(
            make_channel=fixtures["telegram_channel"],
            deliver=lambda client, channel, forged: telegram_post(
                client, channel, telegram_update(1), secret="forged" if forged else channel.webhook_secret
            ),
            accepted=200,
            expect_reply=_telegram_reply,
        ),
        "meta": Walk(
            make_channel=fixtures["meta_channel"],
            deliver=lambda client, channel, forged: meta_post(
                client,
                channel,
                whatsapp_text(channel, wamid="wamid.WALK"),
                **({"signature": "sha256=" + "0" * 64} if forged else {}),
            ),
            accepted=200,
            expect_reply=_meta_reply,
        ),
        "twilio": Walk(
            make_channel=fixtures["twilio_channel"],
            deliver=lambda client, channel, forged: twilio_post(
                client, channel, "sms", _twilio_sms(), token="forged" if forged else AUTH_TOKEN
            ),
            accepted=200,
            expect_reply=_twilio_reply,
        ),
        "api": Walk(
            make_channel=fixtures["api_channel"],
            deliver=api_deliver,
            accepted=202,
            expect_reply=_api_reply,
        ),
    }


@pytest.fixture
def walks(telegram_channel: Any, meta_channel: Any, twilio_channel: Any, api_channel: Any) -> dict[str, Walk]:
    return _walks(
        {
            "telegram_channel": telegram_channel,
            "meta_channel": meta_channel,
            "twilio_channel": twilio_channel,
            "api_channel": api_channel,
        }
    )


def test_every_provider_is_walked(walks: dict[str, Walk]) -> None:
    assert set(walks) == set(PROVIDERS)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_provider_keeps_the_contract(
    name: str, walks: dict[str, Walk], client: Client, httpserver: HTTPServer, make_user: Any
) -> None:
    walk = walks[name]
    channel = walk.make_channel()

    forged = walk.deliver(client, channel, True)
    assert forged.status_code in {401, 403}, forged.content
    assert not InboundEvent.objects.exists()

    assert walk.deliver(client, channel, False).status_code == walk.accepted
    assert walk.deliver(client, channel, False).status_code == walk.accepted  # the replay
    assert InboundEvent.objects.filter(channel=channel).count() == 1
    drain(channel)
    assert Message.objects.filter(inbox=channel.inbox, direction=Message.Direction.INBOUND).count() == 1

    conversation = Conversation.objects.get(inbox=channel.inbox)
    agent = make_user("Agent")
    grant_inbox(channel.inbox, agent)
    provider_id = walk.expect_reply(httpserver, channel)
    reply = conversation_reply(ctx=ctx(agent), conversation=conversation, text="On it.")
    outbound.reply_deliver(reply.pk)
    httpserver.check_assertions()
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.provider_message_id) == (Message.DeliveryStatus.SENT, provider_id)


def test_each_provider_answers_the_replies_of_its_own_inbox_kinds() -> None:
    kinds = [kind for provider in PROVIDERS.values() for kind in provider.inbox_kinds]
    assert len(kinds) == len(set(kinds))
    assert ChannelKind.EMAIL not in kinds and ChannelKind.LIVECHAT not in kinds
