"""Search bursts, judged inline like bulk reads: searches per minute against the user's own
busiest minute and a ceiling, answered in the request that crossed the line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from accounts import roles
from accounts.models import User
from audit.alerts.models import Alert, AlertKind, AlertResponse, AlertSeverity, ResponseKind
from audit.detectors import baselines, inline
from audit.detectors.inline import baseline_key, counters
from audit.models import AccessEvent
from inbox.models import ChannelKind, Inbox, Module
from tests.audit.monitoring import monitoring_keys_clear, respond
from tests.inbox.conftest import grant_inbox, make_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_counters(monkeypatch: Any) -> Iterator[None]:
    # One calendar minute for the whole test: a burst split by a minute boundary is two.
    monkeypatch.setattr(inline, "time", SimpleNamespace(time=lambda: 1_800_000_030.0))
    monitoring_keys_clear()
    yield
    monitoring_keys_clear()


@pytest.fixture
def agent(make_user: Callable[..., User]) -> User:
    user = make_user(roles.AGENT, username="alice")
    inbox = Inbox.objects.create(name="Support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT)
    grant_inbox(inbox, user)
    make_conversation(inbox, text="refund for order 1234")
    return user


def search(client: Client, times: int, start: int = 0) -> list[int]:
    return [client.get("/", {"q": f"order {n}"}).status_code for n in range(start, start + times)]


def test_searching_far_past_her_own_pace_asks_for_a_fresh_factor(
    agent: User,
    verified_client: Callable[[User], Client],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.MONITOR_SEARCH_CEILING = 200
    respond(AlertKind.SEARCH_BURST, ResponseKind.STEP_UP)
    # Her busiest minute of two weeks held 10 searches: 30 is still her pattern.
    counters().put({baseline_key(agent.pk): "searches=10"}, 60)
    client = verified_client(agent)
    assert set(search(client, 30)) == {200}
    # Paging and filtering are not searches.
    assert client.get("/", {"status": "resolved"}).status_code == 200
    assert not Alert.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        statuses = search(client, 1, start=30)
    statuses += search(client, 1, start=31)
    alert = Alert.objects.get(kind=AlertKind.SEARCH_BURST, user=agent)
    assert alert.severity == AlertSeverity.MEDIUM
    assert alert.evidence == {"searches_per_minute": 31}
    assert alert.baseline["own_peak_per_minute"] == 10 and alert.baseline["threshold"] == 30
    assert AlertResponse.objects.get(alert=alert).response == ResponseKind.STEP_UP
    # The crossing page was answered; the next one waits for the second factor.
    assert statuses[0] == 200 and statuses[1] == 403
    assert AccessEvent.objects.filter(user_id=agent.pk, action__startswith="search:").count() == 31


def test_past_the_ceiling_is_high_even_for_a_heavy_searcher(
    agent: User, verified_client: Callable[[User], Client], settings: Any
) -> None:
    settings.MONITOR_SEARCH_CEILING = 25
    counters().put({baseline_key(agent.pk): "searches=40"}, 60)
    client = verified_client(agent)
    assert set(search(client, 26)) == {200}
    alert = Alert.objects.get(kind=AlertKind.SEARCH_BURST, user=agent)
    assert alert.severity == AlertSeverity.HIGH
    assert alert.baseline["threshold"] == 25
    assert Alert.objects.count() == 1


def test_the_search_baseline_is_her_busiest_minute_of_the_last_two_weeks(agent: User) -> None:
    now = timezone.now()
    for minutes_ago, count in ((5, 7), (60 * 24 * 3, 12), (60 * 24 * 20, 50)):
        # Written with the clock moved back: three weeks ago is outside the baseline.
        with mock.patch("django.utils.timezone.now", return_value=now - timedelta(minutes=minutes_ago)):
            for n in range(count):
                AccessEvent.objects.create(
                    user_id=agent.pk, object_type="inbox.conversation", action=f"search:{n}", allowed=True
                )
    monitoring_keys_clear()  # the writes above were scored too

    assert baselines.read_baselines_refresh() == 1
    _, [raw] = counters().add({}, [baseline_key(agent.pk)])
    assert raw == b"searches=12"
