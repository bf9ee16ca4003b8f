"""What supervisors do with alerts: acknowledge, resolve, false positive, reverse — each
audited, each only for the accounts they manage; and the response policies' admin."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from accounts import roles
from accounts.models import User, UserSession
from audit.alerts import services
from audit.alerts.models import (
    Alert,
    AlertKind,
    AlertResponse,
    AlertSeverity,
    AlertSuppression,
    ResponseKind,
    ResponseMode,
    ResponsePolicy,
)
from audit.alerts.services import AlertForbidden, Finding, alert_raise
from audit.models import SecurityEvent
from inbox.exports.selectors import freeze_of
from inbox.models import ChannelKind, Inbox, Module, Team
from inbox.policy import AccessContext
from tests.audit.monitoring import respond
from tests.inbox.conftest import grant_inbox

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("monitoring_keys_fresh")]

ALERTS = "/admin/audit/alert/"


@pytest.fixture
def people(make_user: Callable[..., User]) -> dict[str, User]:
    """sam supervises the support segment (alice's); olga works in billing, outside it."""
    support = Inbox.objects.create(name="Support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT)
    team = Team.objects.create(name="Support team")
    grant_inbox(support, team)
    alice = make_user(roles.AGENT, username="alice")
    alice.groups.add(team)
    sam = make_user(roles.SUPERVISOR, username="sam", is_staff=True)
    grant_inbox(support, sam, perms=("view_inbox", "manage_inbox"))
    assign_perm("manage_team", sam, team)
    billing = Inbox.objects.create(name="Billing", channel_kind=ChannelKind.EMAIL, module=Module.BILLING)
    billing_team = Team.objects.create(name="Billing team")
    grant_inbox(billing, billing_team)
    olga = make_user(roles.AGENT, username="olga")
    olga.groups.add(billing_team)
    ada = make_user(roles.ADMINISTRATOR, username="ada", is_staff=True)
    return {"alice": alice, "sam": sam, "olga": olga, "ada": ada}


def finding(
    user: User, *, pattern: str = "hour:03", kind: AlertKind = AlertKind.UNUSUAL_SIGN_IN_HOUR
) -> Finding:
    return Finding(
        kind=kind,
        severity=AlertSeverity.MEDIUM,
        score=60,
        pattern=pattern,
        user_id=user.pk,
        summary="Signed in at 03:00.",
        evidence={"hour": 3},
        baseline={"sign_ins_by_hour": {"10": 12}},
    )


def ctx(user: User) -> AccessContext:
    return AccessContext.for_task(user)


def test_a_false_positive_silences_that_pattern_for_that_user_for_the_configured_time(
    people: dict[str, User], settings: Any
) -> None:
    respond(AlertKind.UNUSUAL_SIGN_IN_HOUR)
    alice, olga, sam = people["alice"], people["olga"], people["sam"]
    first = alert_raise(finding(alice))
    assert first is not None
    services.alert_handle(ctx=ctx(sam), alert=first, status=Alert.Status.FALSE_POSITIVE, note="night shift")

    assert alert_raise(finding(alice)) is None  # the same pattern: silenced
    assert alert_raise(finding(alice, pattern="hour:04")) is not None  # another hour is news
    assert alert_raise(finding(olga)) is not None  # and so is another person
    suppression = AlertSuppression.objects.get(user=alice)
    assert suppression.until - first.handled_at == settings.MONITOR_FALSE_POSITIVE_SUPPRESSION
    handled = SecurityEvent.objects.get(kind=SecurityEvent.Kind.ALERT_HANDLED, user=alice)
    assert handled.detail["status"] == "false_positive" and handled.detail["by"] == "sam"

    later = timezone.now() + settings.MONITOR_FALSE_POSITIVE_SUPPRESSION + timedelta(minutes=1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        assert alert_raise(finding(alice)) is not None  # the silence lapsed


def test_the_same_open_alert_is_not_raised_twice_but_a_worse_one_is(people: dict[str, User]) -> None:
    respond(AlertKind.BULK_READS)
    alice = people["alice"]
    medium = finding(alice, kind=AlertKind.BULK_READS, pattern="conversations")
    assert alert_raise(medium) is not None
    assert alert_raise(medium) is None
    high = Finding(**{**medium.__dict__, "severity": AlertSeverity.HIGH})
    assert alert_raise(high) is not None


def test_every_enforced_response_is_reversible_and_each_reversal_is_audited(
    people: dict[str, User],
    verified_client: Callable[[User], Client],
    django_capture_on_commit_callbacks: Any,
) -> None:
    alice, ada = people["alice"], people["ada"]
    respond(
        AlertKind.DENIED_BURST,
        ResponseKind.STEP_UP,
        ResponseKind.LOCK_ACCOUNT,
        ResponseKind.END_SESSIONS,
        ResponseKind.FREEZE_EXPORTS,
        ResponseKind.NOTIFY,
    )
    client = verified_client(alice)
    with django_capture_on_commit_callbacks(execute=True):
        alert = alert_raise(finding(alice, kind=AlertKind.DENIED_BURST, pattern="denied"))
    assert alert is not None
    alice.refresh_from_db()
    assert alice.is_locked
    assert not UserSession.objects.filter(user=alice, ended_at=None).exists()
    assert freeze_of(alice) is not None

    with django_capture_on_commit_callbacks(execute=True):
        assert services.responses_reverse_all(ctx=ctx(ada), alert=alert) == 5
    alice.refresh_from_db()
    assert not alice.is_locked
    assert freeze_of(alice) is None
    assert all(taken.reversed_by == ada for taken in alert.responses.all())
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.RESPONSE_REVERSED, user=alice).count() == 5
    # Signed in again: no step-up is waiting any more.
    assert verified_client(alice).get("/").status_code == 200
    assert client.get("/").status_code == 302  # the ended session stays ended
    # Reversing twice does nothing more.
    assert services.responses_reverse_all(ctx=ctx(ada), alert=alert) == 0


def test_a_step_up_marker_asks_every_session_once(
    people: dict[str, User],
    verified_client: Callable[[User], Client],
    django_capture_on_commit_callbacks: Any,
) -> None:
    alice = people["alice"]
    respond(AlertKind.UNUSUAL_SIGN_IN_HOUR, ResponseKind.STEP_UP)
    client = verified_client(alice)
    with django_capture_on_commit_callbacks(execute=True):
        alert = alert_raise(finding(alice))
    assert alert is not None
    assert client.get("/").status_code == 403
    assert client.get("/api/v1/conversations/").status_code == 403
    assert client.get("/accounts/logout/").status_code != 403  # signing out stays possible


def test_monitor_mode_records_the_response_and_does_nothing(
    people: dict[str, User],
    verified_client: Callable[[User], Client],
    django_capture_on_commit_callbacks: Any,
) -> None:
    alice = people["alice"]
    respond(
        AlertKind.UNUSUAL_SIGN_IN_HOUR,
        ResponseKind.STEP_UP,
        ResponseKind.LOCK_ACCOUNT,
        mode=ResponseMode.MONITOR,
    )
    client = verified_client(alice)
    with django_capture_on_commit_callbacks(execute=True):
        alert = alert_raise(finding(alice))
    assert alert is not None
    assert {(r.response, r.mode) for r in alert.responses.all()} == {
        (ResponseKind.STEP_UP, ResponseMode.MONITOR),
        (ResponseKind.LOCK_ACCOUNT, ResponseMode.MONITOR),
    }
    alice.refresh_from_db()
    assert not alice.is_locked
    assert client.get("/").status_code == 200


def test_a_response_below_its_severity_or_off_is_not_taken(people: dict[str, User]) -> None:
    alice = people["alice"]
    respond(AlertKind.UNUSUAL_SIGN_IN_HOUR, ResponseKind.LOCK_ACCOUNT, min_severity=AlertSeverity.HIGH)
    ResponsePolicy.objects.create(
        kind=AlertKind.UNUSUAL_SIGN_IN_HOUR, response=ResponseKind.STEP_UP, mode=ResponseMode.OFF
    )
    alert = alert_raise(finding(alice))
    assert alert is not None and not alert.responses.exists()


# --- Who may see and handle an alert ------------------------------------------------------


def test_a_supervisor_sees_and_handles_only_alerts_about_accounts_they_manage(
    people: dict[str, User], verified_client: Callable[[User], Client]
) -> None:
    respond(AlertKind.UNUSUAL_SIGN_IN_HOUR)
    alice, olga, sam = people["alice"], people["olga"], people["sam"]
    mine = alert_raise(finding(alice))
    foreign = alert_raise(finding(olga))
    about_sam = alert_raise(finding(sam))
    assert mine and foreign and about_sam
    client = verified_client(sam)

    listed = client.get(ALERTS)
    assert listed.status_code == 200
    assert [a.pk for a in listed.context["cl"].result_list] == [mine.pk]
    assert client.get(f"{ALERTS}{foreign.pk}/change/").status_code == 302  # "doesn't exist" → index
    assert client.get(f"{ALERTS}{mine.pk}/change/").status_code == 200

    # A forged action naming the foreign alert (and his own) changes nothing.
    client.post(
        ALERTS,
        {"action": "mark_false_positive", "_selected_action": [foreign.pk, about_sam.pk, mine.pk]},
    )
    statuses = dict(Alert.objects.values_list("pk", "status"))
    assert statuses == {mine.pk: "false_positive", foreign.pk: "open", about_sam.pk: "open"}
    assert not AlertSuppression.objects.filter(user__in=[olga, sam]).exists()


def test_a_stolen_supervisor_session_cannot_dismiss_the_alert_about_itself(people: dict[str, User]) -> None:
    respond(AlertKind.UNUSUAL_SIGN_IN_HOUR, ResponseKind.STEP_UP)
    sam, ada = people["sam"], people["ada"]
    about_sam = alert_raise(finding(sam))
    assert about_sam is not None
    for status in (Alert.Status.RESOLVED, Alert.Status.FALSE_POSITIVE):
        with pytest.raises(AlertForbidden):
            services.alert_handle(ctx=ctx(sam), alert=about_sam, status=status)
    with pytest.raises(AlertForbidden):
        services.responses_reverse_all(ctx=ctx(sam), alert=about_sam)
    # An administrator is no exception for alerts about themselves.
    about_ada = alert_raise(finding(ada))
    assert about_ada is not None
    with pytest.raises(AlertForbidden):
        services.alert_handle(ctx=ctx(ada), alert=about_ada, status=Alert.Status.RESOLVED)
    assert AlertResponse.objects.filter(reversed_at=None).count() == 2


def test_an_agent_has_no_alerts_queue(
    people: dict[str, User], verified_client: Callable[[User], Client]
) -> None:
    alert_raise(finding(people["olga"]))
    assert verified_client(people["alice"]).get(ALERTS).status_code in (302, 403)


def test_the_queue_shows_evidence_baseline_and_responses(
    people: dict[str, User], verified_client: Callable[[User], Client]
) -> None:
    respond(AlertKind.UNUSUAL_SIGN_IN_HOUR, ResponseKind.STEP_UP)
    alert = alert_raise(finding(people["alice"]))
    assert alert is not None
    page = verified_client(people["sam"]).get(f"{ALERTS}{alert.pk}/change/")
    body = page.content.decode()
    assert "sign_ins_by_hour" in body and "&quot;hour&quot;: 3" in body
    assert "step_up" in body


def test_only_administrators_change_response_policies(
    people: dict[str, User], verified_client: Callable[[User], Client]
) -> None:
    policy = ResponsePolicy.objects.create(
        kind=AlertKind.NETWORK_CHANGE, response=ResponseKind.LOCK_ACCOUNT, mode=ResponseMode.MONITOR
    )
    url = f"/admin/audit/responsepolicy/{policy.pk}/change/"
    form = {"kind": policy.kind, "min_severity": 1, "response": policy.response, "mode": "enforce"}
    sam = verified_client(people["sam"])
    assert sam.get("/admin/audit/responsepolicy/").status_code == 200
    assert sam.post(url, form).status_code == 403
    policy.refresh_from_db()
    assert policy.mode == ResponseMode.MONITOR
    assert verified_client(people["ada"]).post(url, form).status_code == 302
    policy.refresh_from_db()
    assert policy.mode == ResponseMode.ENFORCE
