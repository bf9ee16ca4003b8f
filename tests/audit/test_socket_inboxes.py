"""A socket subscribing beyond its usual inboxes: the agent socket enqueues the inboxes it
joined, and a real Celery worker compares them with what this user's sockets followed
over the last 14 days, after a learning period."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from audit.alerts.models import Alert, AlertKind, AlertSeverity, ResponseKind
from audit.detectors.sockets import socket_inboxes_judge
from tests.audit.monitoring import monitoring_keys_clear, respond
from tests.channels.conftest import celery_worker  # noqa: F401  # the fixture
from tests.inbox.conftest import grant_inbox
from tests.livechat.conftest import (  # noqa: F401  # fixtures used by name
    Chat,
    agent_socket,
    chat,
    closed_sockets,
    db,
    fresh_redis,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


@pytest.fixture(autouse=True)
def fresh_keys() -> Iterator[None]:
    monitoring_keys_clear()
    yield
    monitoring_keys_clear()


def joined_on(days_ago: float, user_id: int, inbox_ids: list[int]) -> None:
    """An earlier socket of this user, judged with the clock moved back to its day."""
    at = timezone.now() - timedelta(days=days_ago)
    with mock.patch("django.utils.timezone.now", return_value=at):
        assert socket_inboxes_judge(user_id=user_id, inbox_ids=inbox_ids) is None


async def alerts_of(user_id: int, *, wait: float) -> list[Alert]:
    deadline = time.monotonic() + wait
    while True:
        alerts = await db(lambda: list(Alert.objects.filter(user_id=user_id)))()
        if alerts or time.monotonic() > deadline:
            return alerts
        await asyncio.sleep(0.05)


async def test_a_socket_following_an_inbox_new_to_her_raises_an_alert_on_the_worker(chat: Chat) -> None:  # noqa: F811  # the fixture
    agent = chat.agent
    await db(respond)(AlertKind.SOCKET_NEW_INBOXES, ResponseKind.NOTIFY)
    # Three weeks of her sockets following her chat inbox (the first join starts learning).
    for days_ago in (21, 10, 2):
        await db(joined_on)(days_ago, agent.pk, [chat.inbox.pk])
    # Her usual inbox: nothing to say.
    communicator, connected, _ = await agent_socket(agent)
    assert connected
    assert await alerts_of(agent.pk, wait=1.5) == []
    await communicator.disconnect()

    # Now her account can reach billing too (a grant widened behind a supervisor's back).
    await db(grant_inbox)(chat.other_inbox, agent)
    _, connected, _ = await agent_socket(agent)
    assert connected
    [alert] = await alerts_of(agent.pk, wait=10)
    assert alert.kind == AlertKind.SOCKET_NEW_INBOXES and alert.severity == AlertSeverity.MEDIUM
    assert alert.evidence["new_inboxes"] == [{"id": chat.other_inbox.pk, "name": chat.other_inbox.name}]
    assert alert.baseline["usual_inboxes"] == [chat.inbox.pk]
    assert alert.pattern == f"inboxes:{chat.other_inbox.pk}"
    responses = await db(lambda: [taken.response for taken in alert.responses.all()])()
    assert responses == [ResponseKind.NOTIFY]

    # Once seen, billing is one of her inboxes: the next socket raises nothing more.
    _, connected, _ = await agent_socket(agent)
    assert connected
    await asyncio.sleep(1.0)
    assert len(await alerts_of(agent.pk, wait=0)) == 1


async def test_an_open_socket_whose_scope_widens_is_judged_too(chat: Chat) -> None:  # noqa: F811  # the fixture
    agent = chat.agent
    for days_ago in (21, 10, 2):
        await db(joined_on)(days_ago, agent.pk, [chat.inbox.pk])
    _, connected, _ = await agent_socket(agent)
    assert connected
    # The grant reaches the open socket at once (accounts.live), and so does the judgement.
    await db(grant_inbox)(chat.other_inbox, agent)
    [alert] = await alerts_of(agent.pk, wait=10)
    assert alert.evidence["joined"] == [chat.other_inbox.pk]


async def test_nothing_is_raised_while_her_sockets_are_still_being_learned(chat: Chat) -> None:  # noqa: F811  # the fixture
    agent = chat.agent
    await db(joined_on)(3, agent.pk, [chat.inbox.pk])
    await db(grant_inbox)(chat.other_inbox, agent)
    _, connected, _ = await agent_socket(agent)
    assert connected
    assert await alerts_of(agent.pk, wait=1.5) == []


def test_an_inbox_not_followed_for_two_weeks_is_new_again(chat: Chat) -> None:  # noqa: F811  # the fixture
    joined_on(20, chat.agent.pk, [chat.inbox.pk])
    joined_on(16, chat.agent.pk, [chat.inbox.pk, chat.other_inbox.pk])
    joined_on(8, chat.agent.pk, [chat.inbox.pk])
    joined_on(1, chat.agent.pk, [chat.inbox.pk])
    alert = socket_inboxes_judge(user_id=chat.agent.pk, inbox_ids=[chat.inbox.pk, chat.other_inbox.pk])
    assert alert is not None
    assert alert.baseline["usual_inboxes"] == [chat.inbox.pk]
