"""Sign-in detectors as they run in production: events written by the real sign-in views,
judged by a real Celery worker woken after the commit, answered on the next request."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pyotp
import pytest
from django.core.cache import cache
from django.test import Client

from accounts import roles
from accounts.models import User
from audit.alerts import services
from audit.alerts.models import (
    Alert,
    AlertKind,
    AlertResponse,
    AlertSeverity,
    BlockedAddress,
    DetectorCursor,
    ResponseKind,
)
from audit.models import SecurityEvent
from audit.services import security_event_record
from inbox.policy import AccessContext
from tests.audit.monitoring import clock_at, respond
from tests.channels.conftest import celery_worker  # noqa: F401  # fixture used by name
from tests.conftest import PASSWORD

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker", "role_groups", "monitoring_keys_fresh"),
]

TODAY_3AM = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def wait_for(kind: AlertKind, timeout: float = 15.0, **filters: Any) -> Alert:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The alert and its responses commit together.
        alert = Alert.objects.filter(kind=kind, **filters).first()
        if alert is not None:
            return alert
        time.sleep(0.1)
    raise AssertionError(f"no {kind} alert within {timeout} s")


def sign_in(client: Client, user: User, code: str) -> None:
    assert (
        client.post("/accounts/login/", {"username": user.username, "password": PASSWORD}).status_code == 302
    )
    assert client.post("/accounts/verify/", {"token": code, "next": "/"}).status_code == 302


def day_time_history(user: User, days: int = 20) -> None:
    """A sign-in every working day at 09:00 to 16:00 for the last `days` days."""
    for day in range(days, 0, -1):
        at = TODAY_3AM.replace(hour=9 + day % 8) - timedelta(days=day)
        with mock.patch("django.utils.timezone.now", return_value=at):
            SecurityEvent.objects.create(kind=SecurityEvent.Kind.OTP_SUCCEEDED, user=user)


def test_a_day_time_agent_signing_in_at_3am_on_a_new_device_must_step_up_on_the_next_request(
    make_user: Callable[..., User], totp: Callable[[User], pyotp.TOTP]
) -> None:
    respond(AlertKind.UNUSUAL_SIGN_IN_HOUR, ResponseKind.STEP_UP, ResponseKind.NOTIFY)
    respond(AlertKind.NEW_DEVICE, ResponseKind.NOTIFY)
    agent = make_user(roles.AGENT, username="alice")
    day_time_history(agent)
    with mock.patch("django.utils.timezone.now", return_value=TODAY_3AM - timedelta(days=20)):
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.DEVICE_REGISTERED, user=agent, detail={"device": 1}
        )
    client = Client()
    with clock_at(TODAY_3AM):
        sign_in(client, agent, totp(agent).now())
        # What the device registry records for a browser it has not seen (the suite's test
        # client cannot make device proofs, so the record is written as the registry does).
        security_event_record(kind=SecurityEvent.Kind.DEVICE_REGISTERED, user=agent, detail={"device": 2})
        alert = wait_for(AlertKind.UNUSUAL_SIGN_IN_HOUR, user=agent)
        assert wait_for(AlertKind.NEW_DEVICE, user=agent).evidence["device"] == 2

        assert alert.severity == AlertSeverity.MEDIUM
        assert alert.evidence["hour"] == 3
        assert alert.baseline["sign_ins"] == 20
        assert set(alert.baseline["sign_ins_by_hour"]) <= {f"{h:02d}" for h in range(9, 17)}
        assert {r.response for r in alert.responses.all()} == {ResponseKind.STEP_UP, ResponseKind.NOTIFY}

        asked = client.get("/")
        assert asked.status_code == 403
        assert b"Something unusual was noticed" in asked.content
        # The code of the next 30 s step: the sign-in used this step's, and codes work once.
        next_code = totp(agent).at(time.time() + 30)
        continued = client.post("/accounts/step-up/", {"token": next_code, "step_up_next": "/"})
        assert continued.status_code == 303
        assert client.get("/").status_code == 200


def test_the_learning_period_keeps_a_new_agent_from_alerting(
    make_user: Callable[..., User], totp: Callable[[User], pyotp.TOTP]
) -> None:
    respond(AlertKind.UNUSUAL_SIGN_IN_HOUR, ResponseKind.STEP_UP)
    agent = make_user(roles.AGENT, username="newbie")
    day_time_history(agent, days=8)  # eight sign-ins over eight days: still learning
    client = Client()
    with clock_at(TODAY_3AM):
        sign_in(client, agent, totp(agent).now())
        # The worker judged the sign-in (the cursor passed it) and raised nothing.
        deadline = time.monotonic() + 10
        event = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.OTP_SUCCEEDED, user=agent).latest("pk")
        while (
            time.monotonic() < deadline and not DetectorCursor.objects.filter(last_id__gte=event.pk).exists()
        ):
            time.sleep(0.1)
        assert DetectorCursor.objects.filter(last_id__gte=event.pk).exists()
        assert not Alert.objects.exists()
        assert client.get("/").status_code == 200


def test_password_spraying_from_one_address_blocks_it_until_reversed(make_user: Callable[..., User]) -> None:
    respond(AlertKind.PASSWORD_SPRAYING, ResponseKind.BLOCK_ADDRESS, ResponseKind.NOTIFY)
    for n in range(4):
        make_user(roles.AGENT, username=f"staff{n}")
    administrator = make_user(roles.ADMINISTRATOR, username="ada", is_staff=True)
    sprayer = Client(REMOTE_ADDR="203.0.113.9")
    bystander = Client(REMOTE_ADDR="198.51.100.20")
    names = [f"staff{n}" for n in range(4)] + [f"guess{n}" for n in range(6)]
    for name in names:
        assert sprayer.post(
            "/accounts/login/", {"username": name, "password": "Winter2026!"}
        ).status_code in (400, 429)

    alert = wait_for(AlertKind.PASSWORD_SPRAYING, ip_address="203.0.113.9")
    assert alert.user is None
    assert alert.evidence["count"] == 10
    assert set(alert.evidence["usernames"]) == set(names)
    blocked = alert.responses.get(response=ResponseKind.BLOCK_ADDRESS)
    assert blocked.detail["ip_address"] == "203.0.113.9"

    assert sprayer.get("/accounts/login/").status_code == 403
    assert bystander.get("/accounts/login/").status_code == 200
    # The block is a row, the cache only its fast path: a Redis flush lifts nothing.
    cache.clear()
    assert sprayer.get("/accounts/login/").status_code == 403
    assert BlockedAddress.objects.get(response=blocked).network == "203.0.113.9/32"

    services.response_reverse(ctx=AccessContext.for_task(administrator), taken=blocked)
    assert sprayer.get("/accounts/login/").status_code == 200
    blocked.refresh_from_db()
    assert blocked.reversed_by == administrator
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.RESPONSE_REVERSED).exists()


def test_second_factor_guessing_locks_the_account_and_unlocking_reverses_it(
    make_user: Callable[..., User],
) -> None:
    respond(AlertKind.OTP_GUESSING, ResponseKind.LOCK_ACCOUNT)
    agent = make_user(roles.AGENT, username="bob")
    administrator = make_user(roles.ADMINISTRATOR, username="ada", is_staff=True)
    thief = Client()
    assert thief.post("/accounts/login/", {"username": "bob", "password": PASSWORD}).status_code == 302
    for guess in ("000000", "111111", "222222", "333333", "444444"):
        thief.post("/accounts/verify/", {"token": guess, "next": "/"})
        time.sleep(0.05)

    alert = wait_for(AlertKind.OTP_GUESSING, user=agent)
    agent.refresh_from_db()
    assert agent.is_locked and f"Alert #{alert.pk}" in agent.lock_reason
    assert alert.evidence["refused_codes"] >= 5

    locked = AlertResponse.objects.get(alert=alert, response=ResponseKind.LOCK_ACCOUNT)
    services.response_reverse(ctx=AccessContext.for_task(administrator), taken=locked)
    agent.refresh_from_db()
    assert not agent.is_locked
