"""Providers' APIs replaced by a local HTTP server (pytest-httpserver) speaking their
documented shapes; deliveries signed here with the documented algorithms, independently
of the code under test (hmac for Meta, the official twilio package for Twilio)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import LazySettings
from django.test import Client
from django.utils import timezone
from pytest_httpserver import HTTPServer
from twilio.request_validator import RequestValidator

from accounts import tokens
from accounts.models import User
from channels_app.models import ApiChannel, MetaChannel, SocialChannel, TelegramChannel, TwilioChannel
from channels_app.webhooks import services as social_services
from inbox.models import ChannelKind, Inbox, Module
from tests.inbox.conftest import grant_inbox

_counter = itertools.count(1)
APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "verify-token-for-tests"
ACCESS_TOKEN = "meta-access-token-for-tests"
BOT_TOKEN = "123456:TEST-bot-token"
WEBHOOK_SECRET = "telegram_webhook_secret-for-tests"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-for-tests"
PUBLIC_BASE = "https://inbox.example.com"
PHONE = "+14155550100"
CALLBACK_SECRET = "integration-callback-secret-for-tests"
CALLBACK_PATH = "/integration/replies"


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    # 127.0.0.1, not "localhost": the channel host check allows exactly the test network.
    return ("127.0.0.1", 0)


@pytest.fixture(autouse=True)
def social_settings(settings: LazySettings, httpserver: HTTPServer) -> None:
    settings.SOCIAL_RETRY_BACKOFF_SECONDS = 0.05
    settings.TELEGRAM_POLL_TIMEOUT_SECONDS = 0
    # The providers' stand-in is a loopback server: allowed on its own port only.
    settings.CHANNEL_ALLOW_PRIVATE_PORTS = [httpserver.port]


def drain(channel: SocialChannel, *, now: datetime | None = None) -> int:
    """Run the processing task's body until the channel has nothing due."""
    processed = 0
    while True:
        result = social_services.inbound_events_drain(channel_id=channel.pk, now=now)
        processed += result.processed
        if not result.more:
            return processed


def api_base(server: HTTPServer) -> str:
    return server.url_for("").rstrip("/")


def make_inbox(kind: str, name: str = "") -> Inbox:
    return Inbox.objects.create(
        name=name or f"{kind} inbox {next(_counter)}", channel_kind=kind, module=Module.SUPPORT
    )


@pytest.fixture
def meta_channel(httpserver: HTTPServer) -> Callable[..., MetaChannel]:
    def make(kind: str = ChannelKind.WHATSAPP, *, inbox: Inbox | None = None, **fields: Any) -> MetaChannel:
        values: dict[str, Any] = {
            "inbox": inbox or make_inbox(kind),
            "kind": kind,
            "account_id": str(100000 + next(_counter)),
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "access_token": ACCESS_TOKEN,
            "api_base_url": api_base(httpserver),
        }
        values.update(fields)
        return MetaChannel.objects.create(**values)

    return make


@pytest.fixture
def telegram_channel(httpserver: HTTPServer) -> Callable[..., TelegramChannel]:
    def make(*, inbox: Inbox | None = None, **fields: Any) -> TelegramChannel:
        values: dict[str, Any] = {
            "inbox": inbox or make_inbox(ChannelKind.TELEGRAM),
            "bot_token": BOT_TOKEN,
            "webhook_secret": WEBHOOK_SECRET,
            "public_base_url": PUBLIC_BASE,
            "api_base_url": api_base(httpserver),
        }
        values.update(fields)
        return TelegramChannel.objects.create(**values)

    return make


@pytest.fixture
def twilio_channel(httpserver: HTTPServer) -> Callable[..., TwilioChannel]:
    def make(*, inbox: Inbox | None = None, **fields: Any) -> TwilioChannel:
        values: dict[str, Any] = {
            "inbox": inbox or make_inbox(ChannelKind.SMS),
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "phone_number": PHONE,
            "public_base_url": PUBLIC_BASE,
            "api_base_url": api_base(httpserver),
        }
        values.update(fields)
        return TwilioChannel.objects.create(**values)

    return make


@pytest.fixture
def api_channel(httpserver: HTTPServer) -> Callable[..., ApiChannel]:
    def make(*, inbox: Inbox | None = None, **fields: Any) -> ApiChannel:
        values: dict[str, Any] = {
            "inbox": inbox or make_inbox(ChannelKind.API),
            "callback_url": httpserver.url_for(CALLBACK_PATH),
            "callback_secret": CALLBACK_SECRET,
        }
        values.update(fields)
        return ApiChannel.objects.create(**values)

    return make


def integration_token(inboxes: list[Inbox], *, can_write: bool = True, granted: bool = True) -> str:
    """An integration's token: a service account with agent grants on the inboxes, and a
    token scoped to them."""
    account = User.objects.create_user(username=f"integration-{next(_counter)}", is_service_account=True)
    if granted:
        for inbox in inboxes:
            grant_inbox(inbox, account)
    return tokens.token_issue(
        name="Integration",
        user=account,
        inbox_ids=[inbox.pk for inbox in inboxes],
        can_write=can_write,
        expires_at=timezone.now() + timedelta(days=30),
    ).plaintext


def api_push(client: Client, channel: ApiChannel, payload: Any, *, token: str | None, **extra: Any) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.post(
        channel.messages_path(), data=body, content_type="application/json", **headers, **extra
    )


def api_message(
    message_id: str = "crm-msg-1", *, sender: str = "customer-42", text: str = "Hi"
) -> dict[str, Any]:
    return {"message_id": message_id, "sender": {"id": sender, "name": "Ada"}, "text": text}


# --- Signing, the documented way -----------------------------------------------------------


def meta_signature(body: bytes, secret: str = APP_SECRET) -> str:
    """Meta: "sha256=" + hex HMAC-SHA256 of the raw body under the app secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def meta_post(
    client: Client,
    channel: MetaChannel,
    payload: Any,
    *,
    signature: str | None = None,
    content_type: str = "application/json",
) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"HTTP_X_HUB_SIGNATURE_256": signature if signature is not None else meta_signature(body)}
    return client.post(channel.webhook_path(), data=body, content_type=content_type, **headers)


def twilio_post(
    client: Client,
    channel: TwilioChannel,
    hook: str,
    params: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    signed_url: str | None = None,
    signed_params: dict[str, str] | None = None,
    content_type: str = "application/x-www-form-urlencoded",
) -> Any:
    """Signed by twilio's own RequestValidator over the public URL and the parameters."""
    path = f"{channel.webhook_path()}{hook}/"
    url = signed_url or PUBLIC_BASE + path
    signature = RequestValidator(token).compute_signature(url, signed_params or params)
    return client.post(
        path,
        data=urlencode(params),
        content_type=content_type,
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def telegram_post(
    client: Client,
    channel: TelegramChannel,
    update: Any,
    *,
    secret: str | None = WEBHOOK_SECRET,
    content_type: str = "application/json",
) -> Any:
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret} if secret is not None else {}
    return client.post(channel.webhook_path(), data=body, content_type=content_type, **headers)


# --- Documented payload shapes -------------------------------------------------------------


def whatsapp_text(
    channel: MetaChannel, *, wamid: str, sender: str = "15551234567", text: str = "Hi"
) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": channel.account_id,
                            },
                            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": sender}],
                            "messages": [
                                {
                                    "from": sender,
                                    "id": wamid,
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def whatsapp_status(
    channel: MetaChannel, *, wamid: str, status: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    entry_status: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": "15551234567",
    }
    if errors:
        entry_status["errors"] = errors
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": channel.account_id,
                            },
                            "statuses": [entry_status],
                        },
                    }
                ],
            }
        ],
    }


def messaging_text(
    channel: MetaChannel, *, mid: str, sender: str = "6789012345", text: str = "Hello"
) -> dict[str, Any]:
    """Messenger ("page") and Instagram ("instagram") share the messaging shape."""
    return {
        "object": "page" if channel.kind == ChannelKind.MESSENGER else "instagram",
        "entry": [
            {
                "id": channel.account_id,
                "time": int(time.time() * 1000),
                "messaging": [
                    {
                        "sender": {"id": sender},
                        "recipient": {"id": channel.account_id},
                        "timestamp": int(time.time() * 1000),
                        "message": {"mid": mid, "text": text},
                    }
                ],
            }
        ],
    }


def telegram_update(
    update_id: int, *, chat_id: int = 4242, text: str = "Hello bot", message_id: int | None = None
) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id if message_id is not None else update_id,
            "from": {"id": chat_id, "is_bot": False, "first_name": "Ada", "last_name": "Lovelace"},
            "chat": {"id": chat_id, "type": "private", "first_name": "Ada"},
            "date": int(time.time()),
            "text": text,
        },
    }


def twilio_basic_auth(username: str = ACCOUNT_SID, password: str = AUTH_TOKEN) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
