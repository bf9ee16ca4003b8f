"""The metrics endpoint: operators' figures, never a public page. Without a token set it is
a 404; with one, only that bearer token opens it; a signed-in agent's session does not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts import roles
from accounts.models import User

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token-0123456789"


def test_unconfigured_endpoint_is_not_found(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_only_the_token_opens_it(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    for wrong in ("", f"Bearer {TOKEN}x", TOKEN, f"bearer {TOKEN}", f"Bearer {TOKEN[:-1]}"):
        assert client.get("/metrics", headers={"Authorization": wrong}).status_code == 404, wrong
    client.get("/healthz")  # something to have timed
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    for name in (
        "portcullis_http_request_seconds_bucket",
        "portcullis_live_sender_queue_depth",
        "portcullis_livechat_stores_in_flight",
        'portcullis_celery_queue_length{queue="celery"}',
    ):
        assert name in body, name


def test_a_stolen_agent_session_does_not_open_it(
    settings: Any, make_user: Callable[..., User], verified_client: Callable[[User], Client]
) -> None:
    settings.METRICS_TOKEN = TOKEN
    agent = verified_client(make_user(roles.AGENT))
    assert agent.get("/metrics").status_code == 404
