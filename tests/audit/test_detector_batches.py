"""The sign-in detectors judge each event against what came before it, whether that is in
the database already or earlier in the same batch; a batch is read once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from accounts import roles
from accounts.models import User
from audit.alerts.models import Alert, AlertKind, AlertSeverity
from audit.detectors.runner import detectors_run
from audit.models import SecurityEvent

pytestmark = pytest.mark.django_db

Kind = SecurityEvent.Kind
NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def event(at: datetime, kind: str, **fields: object) -> SecurityEvent:
    with mock.patch("django.utils.timezone.now", return_value=at):
        return SecurityEvent.objects.create(kind=kind, **fields)


def test_ten_names_from_one_address_in_one_batch_raise_one_alert_on_the_tenth() -> None:
    for n in range(12):
        event(
            NOW + timedelta(seconds=n),
            Kind.LOGIN_FAILED,
            username_attempted=f"n{n}",
            ip_address="203.0.113.5",
        )
    event(NOW, Kind.LOGIN_FAILED, username_attempted="n0", ip_address="198.51.100.1")  # another address
    with mock.patch("django.utils.timezone.now", return_value=NOW + timedelta(seconds=20)):
        assert detectors_run() >= 13
    alert = Alert.objects.get(kind=AlertKind.PASSWORD_SPRAYING)
    assert alert.evidence["count"] == 10 and alert.ip_address == "203.0.113.5"


def test_names_spread_beyond_the_window_are_not_spraying() -> None:
    for n in range(10):
        event(
            NOW + timedelta(minutes=3 * n),
            Kind.LOGIN_FAILED,
            username_attempted=f"n{n}",
            ip_address="203.0.113.6",
        )
    with mock.patch("django.utils.timezone.now", return_value=NOW + timedelta(hours=1)):
        detectors_run()
    assert not Alert.objects.exists()


def test_a_new_network_after_a_month_of_one_is_a_low_alert(make_user: Callable[..., User]) -> None:
    agent = make_user(roles.AGENT)
    event(
        NOW - timedelta(days=40), Kind.OTP_SUCCEEDED, user=agent, ip_address="172.16.0.1"
    )  # too old to count
    for day in range(1, 5):
        event(NOW - timedelta(days=day), Kind.OTP_SUCCEEDED, user=agent, ip_address=f"10.1.2.{day}")
    event(NOW, Kind.OTP_SUCCEEDED, user=agent, ip_address="10.1.2.200")  # the same /24: no change
    event(NOW + timedelta(minutes=5), Kind.OTP_SUCCEEDED, user=agent, ip_address="172.16.0.9")
    with mock.patch("django.utils.timezone.now", return_value=NOW + timedelta(minutes=6)):
        detectors_run()
    alert = Alert.objects.get(kind=AlertKind.NETWORK_CHANGE)
    assert alert.severity == AlertSeverity.LOW
    assert alert.evidence["network"] == "172.16.0.0/24"
    assert alert.baseline["networks"] == ["10.1.2.0/24"]


def test_the_first_sign_in_ever_has_no_network_to_change_from(make_user: Callable[..., User]) -> None:
    event(NOW, Kind.OTP_SUCCEEDED, user=make_user(roles.AGENT), ip_address="10.9.9.9")
    detectors_run()
    assert not Alert.objects.exists()


def test_the_learning_period_counts_sign_ins_older_than_the_hour_history(
    make_user: Callable[..., User],
) -> None:
    agent = make_user(roles.AGENT)
    for day in range(100, 112):  # twelve sign-ins, all before the 90 days the hours are read from
        event(NOW - timedelta(days=day, hours=-8), Kind.OTP_SUCCEEDED, user=agent)
    event(NOW - timedelta(days=2, hours=-8), Kind.OTP_SUCCEEDED, user=agent)  # 11:00, two days ago
    event(NOW, Kind.OTP_SUCCEEDED, user=agent)
    with mock.patch("django.utils.timezone.now", return_value=NOW + timedelta(minutes=1)):
        detectors_run()
    alert = Alert.objects.get(kind=AlertKind.UNUSUAL_SIGN_IN_HOUR, pattern="hour:03")
    assert alert.baseline["sign_ins_by_hour"] == {"11": 1}


def test_a_run_reads_each_event_once(make_user: Callable[..., User]) -> None:
    agent = make_user(roles.AGENT)
    for n in range(6):
        event(NOW + timedelta(seconds=n), Kind.OTP_FAILED, user=agent)
    with mock.patch("django.utils.timezone.now", return_value=NOW + timedelta(seconds=10)):
        assert detectors_run() == 6
        # The next run reads only what the first wrote: the alert's own events.
        written = SecurityEvent.objects.exclude(kind=Kind.OTP_FAILED).count()
        assert written and detectors_run() == written
        assert detectors_run() == 0
    assert Alert.objects.filter(kind=AlertKind.OTP_GUESSING).count() == 1


def test_a_second_device_is_news_and_the_first_is_not(make_user: Callable[..., User]) -> None:
    agent = make_user(roles.AGENT)
    event(
        NOW - timedelta(days=3), Kind.DEVICE_REGISTERED, user=agent, detail={"device": 1, "name": "Firefox"}
    )
    event(NOW, Kind.DEVICE_REGISTERED, user=agent, detail={"device": 2, "name": "Chrome on Linux"})
    newcomer = make_user(roles.AGENT)
    event(NOW, Kind.DEVICE_REGISTERED, user=newcomer, detail={"device": 3, "name": "Safari"})
    detectors_run()
    alert = Alert.objects.get(kind=AlertKind.NEW_DEVICE)
    assert alert.user == agent
    assert alert.evidence["name"] == "Chrome on Linux" and alert.baseline == {"devices_before": 1}
