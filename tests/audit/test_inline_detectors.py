"""Inline detectors through the real pages: bulk reads and probing, answered in the request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts import roles
from accounts.models import User, UserSession
from audit.alerts.models import Alert, AlertKind, AlertResponse, AlertSeverity, ResponseKind, ResponseMode
from audit.detectors import baselines
from audit.detectors.inline import baseline_key, counters
from audit.models import AccessEvent, SecurityEvent
from inbox.models import ChannelKind, Contact, Conversation, Inbox, Module
from tests.api.conftest import api_url, issue_token, service_account, token_client  # noqa: F401  # fixtures
from tests.audit.monitoring import monitoring_keys_clear, respond
from tests.inbox.conftest import (
    grant_inbox,
    make_conversation,
    segments,  # noqa: F401  # the fixture
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("monitoring_keys_fresh")]


@pytest.fixture
def agent(make_user: Callable[..., User]) -> User:
    return make_user(roles.AGENT, username="alice")


@pytest.fixture
def conversations(agent: User) -> list[Conversation]:
    inbox = Inbox.objects.create(name="Support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT)
    grant_inbox(inbox, agent)
    contacts = Contact.objects.bulk_create(Contact(name=f"c{n}") for n in range(300))
    return Conversation.objects.bulk_create(
        Conversation(inbox=inbox, contact=contact, subject=f"About {n}", last_activity_at=timezone.now())
        for n, contact in enumerate(contacts)
    )


def open_all(client: Client, conversations: list[Conversation]) -> list[int]:
    return [client.get(f"/conversations/{conversation.pk}/").status_code for conversation in conversations]


def test_300_conversations_in_two_minutes_end_the_sessions_in_enforce_mode(
    agent: User, conversations: list[Conversation], verified_client: Callable[[User], Client]
) -> None:
    respond(AlertKind.BULK_READS, ResponseKind.END_SESSIONS, ResponseKind.NOTIFY)
    # Her own busiest minute was 20 conversations: three times that is still her pattern.
    counters().put({baseline_key(agent.pk): "conversations=20"}, 60)
    client = verified_client(agent)
    statuses = open_all(client, conversations)

    alert = Alert.objects.get(kind=AlertKind.BULK_READS, user=agent)
    assert alert.severity == AlertSeverity.MEDIUM
    assert alert.evidence == {"what": "conversations", "per_minute": 61}
    assert alert.baseline["own_peak_per_minute"] == 20
    assert alert.baseline["threshold"] == 60
    # The 61st page was the last: the session ended with it, every later request refused.
    assert statuses[:61] == [200] * 61
    assert set(statuses[61:]) == {302}
    assert not UserSession.objects.filter(user=agent, ended_at=None).exists()
    ended = AlertResponse.objects.get(alert=alert, response=ResponseKind.END_SESSIONS)
    assert ended.mode == ResponseMode.ENFORCE and ended.detail == {"sessions_ended": 1}
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.ALERT_RAISED, user=agent).count() == 1


def test_in_monitor_mode_the_same_pull_raises_the_alert_and_nothing_stops(
    agent: User, conversations: list[Conversation], verified_client: Callable[[User], Client]
) -> None:
    respond(AlertKind.BULK_READS, ResponseKind.END_SESSIONS, mode=ResponseMode.MONITOR)
    client = verified_client(agent)
    statuses = open_all(client, conversations)

    assert statuses == [200] * 300
    assert UserSession.objects.filter(user=agent, ended_at=None).exists()
    # No history: her threshold is the floor (30), then the ceiling (100) for everyone.
    alerts = Alert.objects.filter(kind=AlertKind.BULK_READS, user=agent).order_by("pk")
    assert [(a.severity, a.evidence["per_minute"]) for a in alerts] == [
        (AlertSeverity.MEDIUM, 31),
        (AlertSeverity.HIGH, 101),
    ]
    recorded = AlertResponse.objects.filter(alert__in=alerts)
    assert [(r.response, r.mode, r.detail) for r in recorded] == [
        (ResponseKind.END_SESSIONS, ResponseMode.MONITOR, {})
    ] * 2


def test_40_probes_of_foreign_ids_raise_one_alert_with_the_ids(
    agent: User, make_user: Callable[..., User], verified_client: Callable[[User], Client]
) -> None:
    respond(AlertKind.DENIED_BURST, ResponseKind.NOTIFY)
    foreign = Inbox.objects.create(name="Billing", channel_kind=ChannelKind.EMAIL, module=Module.BILLING)
    others = [make_conversation(foreign) for _ in range(40)]
    client = verified_client(agent)

    assert {client.get(f"/conversations/{c.pk}/").status_code for c in others} == {404}

    alert = Alert.objects.get(kind=AlertKind.DENIED_BURST, user=agent)
    assert alert.severity == AlertSeverity.HIGH
    assert alert.evidence["per_minute"] == 16
    assert all(item.startswith("inbox.conversation:") for item in alert.evidence["sample"])
    assert alert.baseline == {"threshold_per_minute": 15}
    assert AlertResponse.objects.get(alert=alert).response == ResponseKind.NOTIFY


def test_an_ordinary_working_pace_raises_nothing(
    agent: User, conversations: list[Conversation], verified_client: Callable[[User], Client]
) -> None:
    client = verified_client(agent)
    assert set(open_all(client, conversations[:30])) == {200}
    assert client.get("/conversations/999999999/").status_code == 404
    assert not Alert.objects.exists()


def test_the_baseline_is_each_users_busiest_minute_from_the_access_log(agent: User) -> None:
    AccessEvent.objects.bulk_create(
        AccessEvent(
            user_id=agent.pk, object_type="inbox.conversation", object_id=n, action="view", allowed=True
        )
        for n in range(12)
    )
    # Refusals and lists are not reads.
    AccessEvent.objects.create(
        user_id=agent.pk, object_type="inbox.conversation", object_id=99, action="view", allowed=False
    )
    AccessEvent.objects.create(
        user_id=agent.pk, object_type="inbox.conversation", object_id=None, action="list:50", allowed=True
    )
    monitoring_keys_clear()  # the writes above were scored too

    assert baselines.read_baselines_refresh() == 1
    _, [raw] = counters().add({}, [baseline_key(agent.pk)])
    assert raw == b"conversations=12"


def test_a_redis_failure_is_logged_and_the_page_still_answers(
    agent: User,
    conversations: list[Conversation],
    verified_client: Callable[[User], Client],
    monkeypatch: Any,
) -> None:
    from audit.detectors import inline

    def broken() -> Any:
        raise ConnectionError("redis down")

    monkeypatch.setattr(inline, "counters", broken)
    assert verified_client(agent).get(f"/conversations/{conversations[0].pk}/").status_code == 200


def test_a_stolen_token_pulling_the_inbox_is_stopped_by_locking_its_account(
    segments: Any,  # noqa: F811  # the fixture
    service_account: User,  # noqa: F811  # the fixture
    issue_token: Any,  # noqa: F811  # the fixture
    settings: Any,
) -> None:
    settings.MONITOR_TOKEN_ROWS_PER_MINUTE = 8
    respond(AlertKind.TOKEN_READ_VOLUME, ResponseKind.LOCK_ACCOUNT)
    grant_inbox(segments.support, service_account)
    client = token_client(issue_token(service_account, [segments.support]).plaintext)
    # Three conversations listed, then opened one by one, then listed again: 9 rows.
    pulled = [client.get(api_url("conversations/")).status_code]
    pulled += [
        client.get(api_url(f"conversations/{c.pk}/")).status_code for c in segments.support_conversations
    ]
    pulled += [client.get(api_url("conversations/")).status_code]
    assert pulled == [200] * 5

    alert = Alert.objects.get(kind=AlertKind.TOKEN_READ_VOLUME)
    assert alert.user == service_account
    assert alert.evidence == {"api_token": alert.evidence["api_token"], "rows_per_minute": 9}
    service_account.refresh_from_db()
    assert service_account.is_locked
    # Once locked, the token opens nothing more.
    assert client.get(api_url("conversations/")).status_code in (401, 403)
