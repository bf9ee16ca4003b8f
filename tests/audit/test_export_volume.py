"""Export volume: exports asked for within 24 hours against the exporter's own busiest day
and a ceiling, judged in the request that asks; the freeze it answers with stops the next
export and is reversible."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from accounts import roles
from accounts.models import User
from audit.alerts import services as alert_services
from audit.alerts.models import Alert, AlertKind, AlertResponse, AlertSeverity, ResponseKind, ResponseMode
from inbox.exports.models import ExportJob
from inbox.exports.selectors import freeze_of
from inbox.policy import AccessContext
from tests.audit.monitoring import monitoring_keys_clear, respond
from tests.exports.conftest import erin, export_settings, exporter  # noqa: F401  # fixtures
from tests.inbox.conftest import Segments, segments  # noqa: F401  # the fixture

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_counters(settings: Any) -> Iterator[None]:
    settings.EXPORT_DAILY_MAX_FILES = 10
    settings.EXPORT_DAILY_MAX_ROWS = 100_000
    settings.MONITOR_EXPORT_FILES_CEILING = 8
    monitoring_keys_clear()
    yield
    monitoring_keys_clear()


def request_export(client: Client, segments: Segments) -> Any:  # noqa: F811  # the fixture's type
    return client.post("/exports/", {"inbox": segments.support.pk, "kind": "conversations", "format": "csv"})


def history(user: User, segments: Segments, per_day: list[int]) -> None:  # noqa: F811
    """Exports on earlier days, written with the clock moved back to each day."""
    now = timezone.now()
    for days_ago, count in enumerate(per_day, start=1):
        with mock.patch("django.utils.timezone.now", return_value=now - timedelta(days=days_ago)):
            for _ in range(count):
                ExportJob.objects.create(
                    user=user, inbox=segments.support, kind="conversations", format="csv", rows_total=3
                )


def test_more_exports_than_her_busiest_day_freeze_the_next_request_in_enforce_mode_until_reversed(
    segments: Segments,  # noqa: F811
    exporter: User,  # noqa: F811
    erin: Client,  # noqa: F811
    make_user: Callable[..., User],
) -> None:
    respond(AlertKind.EXPORT_VOLUME, ResponseKind.FREEZE_EXPORTS)
    # Two weeks of one export a day, and one day of two; fifteen days ago is outside the baseline.
    history(exporter, segments, [1] * 13 + [2] + [0, 9])
    for _ in range(4):
        assert request_export(erin, segments).status_code == 302
    assert not Alert.objects.exists()

    assert request_export(erin, segments).status_code == 302
    alert = Alert.objects.get(kind=AlertKind.EXPORT_VOLUME, user=exporter)
    assert alert.severity == AlertSeverity.MEDIUM
    assert alert.evidence["exports_24h"] == 5 and alert.evidence["rows_24h"] == 5 * 3
    assert alert.baseline["own_peak_exports_per_day"] == 2
    assert alert.baseline["exports_threshold"] == 4
    freeze = AlertResponse.objects.get(alert=alert, response=ResponseKind.FREEZE_EXPORTS)
    assert freeze.mode == ResponseMode.ENFORCE

    refused = request_export(erin, segments)
    assert refused.status_code == 403 and f"Alert #{alert.pk}" in refused.content.decode()
    assert (
        ExportJob.objects.filter(user=exporter, created_at__gt=timezone.now() - timedelta(hours=1)).count()
        == 5
    )

    admin = make_user(roles.ADMINISTRATOR, username="ada", is_staff=True)
    alert_services.responses_reverse_all(ctx=AccessContext.for_task(admin), alert=alert)
    assert freeze_of(exporter) is None
    assert request_export(erin, segments).status_code == 302


def test_in_monitor_mode_the_freeze_is_only_recorded(
    segments: Segments,  # noqa: F811
    exporter: User,  # noqa: F811
    erin: Client,  # noqa: F811
) -> None:
    # The migration's default: notify enforced, the freeze in monitor mode.
    for _ in range(3):
        assert request_export(erin, segments).status_code == 302
    alert = Alert.objects.get(kind=AlertKind.EXPORT_VOLUME, user=exporter)
    # No history: the floor of two a day is the threshold.
    assert alert.baseline["own_peak_exports_per_day"] == 0 and alert.baseline["exports_threshold"] == 2
    responses = dict(alert.responses.values_list("response", "mode"))
    assert responses == {
        ResponseKind.FREEZE_EXPORTS: ResponseMode.MONITOR,
        ResponseKind.NOTIFY: ResponseMode.ENFORCE,
    }
    assert freeze_of(exporter) is None
    assert request_export(erin, segments).status_code == 302


def test_past_the_ceiling_of_rows_is_high_whatever_her_history(
    segments: Segments,  # noqa: F811
    exporter: User,  # noqa: F811
    erin: Client,  # noqa: F811
    settings: Any,
) -> None:
    settings.MONITOR_EXPORT_ROWS_FLOOR = 1
    settings.MONITOR_EXPORT_ROWS_CEILING = 4
    # A heavy exporter: her own pattern puts her threshold at the ceiling, never above it.
    history(exporter, segments, [3])
    assert request_export(erin, segments).status_code == 302
    assert not Alert.objects.exists()
    assert request_export(erin, segments).status_code == 302
    alert = Alert.objects.get(kind=AlertKind.EXPORT_VOLUME, user=exporter)
    assert alert.severity == AlertSeverity.HIGH
    assert alert.evidence["rows_24h"] == 6
    assert alert.baseline["rows_threshold"] == 4 and alert.baseline["own_peak_rows_per_day"] == 9


def test_refused_and_failed_exports_count_nothing(
    segments: Segments,  # noqa: F811
    exporter: User,  # noqa: F811
    erin: Client,  # noqa: F811
) -> None:
    assert request_export(erin, segments).status_code == 302
    assert request_export(erin, segments).status_code == 302
    ExportJob.objects.filter(user=exporter).update(status=ExportJob.Status.FAILED)
    assert request_export(erin, segments).status_code == 302
    assert not Alert.objects.exists()
