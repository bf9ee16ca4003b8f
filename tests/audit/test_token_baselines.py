"""An API token judged against its own busiest minute, not one flat line for all: the
real API, the real access log, the baselines refreshed from it and kept in Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from accounts.models import User
from audit.alerts.models import Alert, AlertKind, AlertSeverity, ResponseKind
from audit.detectors import baselines
from audit.detectors.inline import counters, token_baseline_key
from audit.models import AccessEvent
from tests.api.conftest import api_url, issue_token, service_account, token_client  # noqa: F401  # fixtures
from tests.audit.monitoring import respond
from tests.inbox.conftest import grant_inbox, segments  # noqa: F401  # the fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("monitoring_keys_fresh")]


@pytest.fixture(autouse=True)
def token_lines(settings: Any) -> None:
    # Small numbers for a three-conversation inbox: past 3 x own peak (floor 4) is unusual,
    # past 100 rows a minute is too much for any token.
    settings.MONITOR_BULK_READ_FACTOR = 3
    settings.MONITOR_TOKEN_ROWS_FLOOR = 4
    settings.MONITOR_TOKEN_ROWS_PER_MINUTE = 100


def history(token_id: int, user: User, rows_in_busiest_minute: int) -> None:
    """What the token was shown two days ago: one listing page of that many rows."""
    # The trail is append-only: the row is written with the clock moved back, not updated.
    with mock.patch("django.utils.timezone.now", return_value=timezone.now() - timedelta(days=2)):
        AccessEvent.objects.create(
            user_id=user.pk,
            api_token_id=token_id,
            object_type="inbox.conversation",
            action=f"list:{rows_in_busiest_minute}",
            allowed=True,
        )


def pull(plaintext: str, segments: Any) -> list[int]:  # noqa: F811  # the fixture's type
    """List, open each of the three, list again: nine rows within the minute."""
    client = token_client(plaintext)
    statuses = [client.get(api_url("conversations/")).status_code]
    statuses += [
        client.get(api_url(f"conversations/{c.pk}/")).status_code for c in segments.support_conversations
    ]
    statuses += [client.get(api_url("conversations/")).status_code]
    return statuses


def test_each_token_is_judged_against_its_own_busiest_minute(
    segments: Any,  # noqa: F811  # the fixture
    service_account: User,  # noqa: F811  # the fixture
    issue_token: Any,  # noqa: F811  # the fixture
) -> None:
    respond(AlertKind.TOKEN_READ_VOLUME, ResponseKind.NOTIFY)
    grant_inbox(segments.support, service_account)
    # One service account, two integrations: a busy CRM sync and a quiet billing lookup.
    busy = issue_token(service_account, [segments.support])
    quiet = issue_token(service_account, [segments.support])
    history(busy.token.pk, service_account, rows_in_busiest_minute=40)
    history(quiet.token.pk, service_account, rows_in_busiest_minute=1)
    assert baselines.read_baselines_refresh() >= 0
    _, peaks = counters().add({}, [token_baseline_key(busy.token.pk), token_baseline_key(quiet.token.pk)])
    assert [int(peak) for peak in peaks] == [40, 1]

    assert pull(busy.plaintext, segments) == [200] * 5
    assert not Alert.objects.filter(kind=AlertKind.TOKEN_READ_VOLUME).exists()  # 9 rows: its normal

    assert pull(quiet.plaintext, segments) == [200] * 5
    alert = Alert.objects.get(kind=AlertKind.TOKEN_READ_VOLUME)
    assert alert.pattern == f"token:{quiet.token.pk}"
    assert alert.severity == AlertSeverity.MEDIUM  # past its own pattern, not the ceiling
    assert alert.evidence == {"api_token": quiet.token.pk, "rows_per_minute": 5}
    assert alert.baseline["own_peak_per_minute"] == 1
    assert alert.baseline["threshold"] == 4
    assert alert.baseline["ceiling"] == 100


def test_a_token_without_history_is_held_to_the_floor_and_every_token_to_the_ceiling(
    segments: Any,  # noqa: F811  # the fixture
    service_account: User,  # noqa: F811  # the fixture
    issue_token: Any,  # noqa: F811  # the fixture
    settings: Any,
) -> None:
    respond(AlertKind.TOKEN_READ_VOLUME, ResponseKind.NOTIFY)
    grant_inbox(segments.support, service_account)
    busy = issue_token(service_account, [segments.support])
    history(busy.token.pk, service_account, rows_in_busiest_minute=40)
    baselines.read_baselines_refresh()
    settings.MONITOR_TOKEN_ROWS_PER_MINUTE = 8  # its own pattern is past the ceiling
    assert pull(busy.plaintext, segments) == [200] * 5
    alert = Alert.objects.get(kind=AlertKind.TOKEN_READ_VOLUME)
    assert alert.severity == AlertSeverity.HIGH
    assert alert.evidence["rows_per_minute"] == 9
