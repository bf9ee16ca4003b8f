"""Offboarding reaches open pages at once: a SCIM deactivation (or removal from the mapped
team) closes the agent's open socket within a second, through the real ASGI app and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from accounts import roles, tokens
from accounts.models import ExternalIdentity, IdentityProvider, IdpGroupMapping, User
from tests.livechat import conftest as livechat
from tests.livechat.conftest import Chat, agent_socket, db

# The live chat fixtures (an inbox, its team and agent; Redis and sockets cleaned up).
chat = livechat.chat
closed_sockets = livechat.closed_sockets
fresh_redis = livechat.fresh_redis

pytestmark = pytest.mark.django_db(transaction=True)

WITHIN = 1.0


def _provisioning(chat: Chat, make_user: Callable[..., User]) -> tuple[IdentityProvider, Client]:
    provider = IdentityProvider.objects.create(
        name="Corp IdP",
        slug="corp",
        enabled=True,
        issuer="https://idp.corp.test",
        client_id="portcullis",
        client_secret="secret",
    )
    ExternalIdentity.objects.create(provider=provider, subject="idp-alice", user=chat.agent)
    account = make_user(username="scim-corp", enrolled=False, is_service_account=True)
    token = tokens.token_issue(
        name="Corp SCIM",
        user=account,
        inbox_ids=[],
        can_write=True,
        expires_at=timezone.now() + timedelta(days=1),
        scim_provider=provider,
    ).plaintext
    return provider, Client(HTTP_AUTHORIZATION=f"Bearer {token}")


async def _closed_within(communicator: Any, started: float) -> None:
    frame = await communicator.receive_json_from(timeout=WITHIN + 1)
    assert frame == {"type": "session.ended"}
    assert await communicator.receive_output(timeout=WITHIN + 1) == {"type": "websocket.close", "code": 4401}
    assert time.monotonic() - started <= WITHIN


async def test_scim_deactivation_closes_the_open_agent_socket_within_a_second(
    chat: Chat, make_user: Callable[..., User]
) -> None:
    _, client = await db(_provisioning)(chat, make_user)
    socket, connected, _ = await agent_socket(chat.agent)
    assert connected
    body = json.dumps({"Operations": [{"op": "replace", "path": "active", "value": False}]})

    started = time.monotonic()
    response = await db(client.patch)(
        f"/api/scim/v2/Users/{chat.agent.pk}", data=body, content_type="application/scim+json"
    )

    assert response.status_code == 200
    await _closed_within(socket, started)


async def test_leaving_the_mapped_scim_group_closes_the_socket_within_a_second(
    chat: Chat, make_user: Callable[..., User]
) -> None:
    provider, client = await db(_provisioning)(chat, make_user)

    def mapped_group() -> str:
        IdpGroupMapping.objects.create(
            provider=provider, idp_group="chat", group=Group.objects.get(pk=chat.team.pk), active=True
        )
        body = {"displayName": "chat", "members": [{"value": str(chat.agent.pk)}]}
        response = client.post(
            "/api/scim/v2/Groups", data=json.dumps(body), content_type="application/scim+json"
        )
        assert response.status_code == 201, response.content
        return str(response.json()["id"])

    group_id = await db(mapped_group)()
    assert await db(lambda: chat.agent.groups.filter(pk=chat.team.pk).exists())()
    socket, connected, _ = await agent_socket(chat.agent)
    assert connected
    body = json.dumps({"Operations": [{"op": "remove", "path": f'members[value eq "{chat.agent.pk}"]'}]})

    started = time.monotonic()
    response = await db(client.patch)(
        f"/api/scim/v2/Groups/{group_id}", data=body, content_type="application/scim+json"
    )

    assert response.status_code == 200
    await _closed_within(socket, started)
    assert not await db(lambda: chat.agent.groups.filter(pk=chat.team.pk).exists())()
    assert roles.AGENT in await db(lambda: list(chat.agent.groups.values_list("name", flat=True)))()
