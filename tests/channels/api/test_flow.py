"""End to end on a real Celery worker (Redis broker, PostgreSQL): an integration pushes a
message in, the agent's reply goes out to its callback server signed, retried with backoff
while the integration is down (the same Idempotency-Key every time), its status shown."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from channels_app.api import callbacks
from channels_app.common.tasks import SEND_MAX_RETRIES
from channels_app.models import ApiChannel
from inbox.models import Conversation, Message
from inbox.services import conversation_reply
from tests.channels.conftest import wait_for
from tests.channels.webhooks.conftest import (
    CALLBACK_PATH,
    CALLBACK_SECRET,
    api_message,
    api_push,
    integration_token,
)
from tests.inbox.conftest import ctx, grant_inbox

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker", "role_groups"),
]


@pytest.fixture
def conversation(
    client: Client, api_channel: Callable[..., ApiChannel], make_user: Callable[..., Any]
) -> tuple[Conversation, Any]:
    channel = api_channel()
    agent = make_user("Agent")
    grant_inbox(channel.inbox, agent)
    token = integration_token([channel.inbox])
    assert (
        api_push(client, channel, api_message(text="Can I change my address?"), token=token).status_code
        == 202
    )
    return wait_for(lambda: Conversation.objects.filter(inbox=channel.inbox).first()), agent


def test_reply_is_signed_retried_once_shown_and_sent(
    conversation: tuple[Conversation, Any], httpserver: HTTPServer
) -> None:
    found, agent = conversation
    assert found.messages.get().text == "Can I change my address?"
    seen_retrying = threading.Event()
    received: list[tuple[str | None, dict[str, Any]]] = []

    def integration(request: Request) -> Response:
        problem = callbacks.signature_problem(CALLBACK_SECRET, request.headers, request.get_data())
        if problem is not None:
            return Response(problem, status=401)
        received.append((request.headers.get(callbacks.IDEMPOTENCY_HEADER), json.loads(request.get_data())))
        if len(received) == 1:
            return Response("Service Unavailable", status=503)
        seen_retrying.wait(timeout=20)
        return Response('{"id": "crm-out-7"}', content_type="application/json")

    httpserver.expect_request(CALLBACK_PATH, method="POST").respond_with_handler(integration)
    message = conversation_reply(ctx=ctx(agent), conversation=found, text="Yes: reply with the new one.")
    shown = wait_for(
        lambda: Message.objects.filter(
            pk=message.pk, delivery_detail__startswith="Retrying (attempt 1)"
        ).first()
    )
    assert shown.delivery_status == Message.DeliveryStatus.QUEUED and "HTTP 503" in shown.delivery_detail
    seen_retrying.set()
    sent = wait_for(
        lambda: Message.objects.filter(pk=message.pk, delivery_status=Message.DeliveryStatus.SENT).first()
    )
    assert sent.provider_message_id == "crm-out-7" and sent.delivery_detail == ""
    assert len(received) == 2
    (first_key, first_body), (second_key, second_body) = received
    assert first_key == second_key == f"portcullis-message-{message.pk}"
    assert first_body == second_body
    assert (
        first_body["recipient"] == {"id": "customer-42"}
        and first_body["text"] == "Yes: reply with the new one."
    )


def test_integration_down_for_good_ends_failed_with_the_reason(
    conversation: tuple[Conversation, Any], httpserver: HTTPServer
) -> None:
    found, agent = conversation
    httpserver.expect_request(CALLBACK_PATH, method="POST").respond_with_data("down", status=502)
    message = conversation_reply(ctx=ctx(agent), conversation=found, text="Hello?")
    failed = wait_for(
        lambda: Message.objects.filter(pk=message.pk, delivery_status=Message.DeliveryStatus.FAILED).first(),
        timeout=60,
    )
    assert failed.delivery_detail.startswith("Gave up after retries") and "HTTP 502" in failed.delivery_detail
    assert len(httpserver.log) == SEND_MAX_RETRIES + 1


def test_a_refused_reply_is_not_retried(
    conversation: tuple[Conversation, Any], httpserver: HTTPServer
) -> None:
    found, agent = conversation
    httpserver.expect_request(CALLBACK_PATH, method="POST").respond_with_data("no such customer", status=422)
    message = conversation_reply(ctx=ctx(agent), conversation=found, text="Hello?")
    failed = wait_for(
        lambda: Message.objects.filter(pk=message.pk, delivery_status=Message.DeliveryStatus.FAILED).first()
    )
    assert "HTTP 422" in failed.delivery_detail and len(httpserver.log) == 1
