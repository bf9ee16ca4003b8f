"""Supervisors hear of an alert live, on their open pages, and by email; nobody else does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core import mail
from guardian.shortcuts import assign_perm

from accounts import roles
from accounts.models import User
from audit.alerts.models import AlertKind, ResponseKind
from audit.alerts.notifications import alert_email_send
from audit.alerts.services import alert_raise
from inbox.models import ChannelKind, Inbox, Module, Team
from tests.audit.monitoring import monitoring_keys_clear, respond
from tests.audit.test_alerts import finding
from tests.inbox.conftest import grant_inbox
from tests.livechat.conftest import agent_socket, closed_sockets, db  # noqa: F401  # fixtures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("role_groups")]


def supervised(make_user: Callable[..., User]) -> dict[str, User]:
    monitoring_keys_clear()
    support = Inbox.objects.create(name="Support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT)
    team = Team.objects.create(name="Support team")
    grant_inbox(support, team)
    alice = make_user(roles.AGENT, username="alice")
    alice.groups.add(team)
    sam = make_user(roles.SUPERVISOR, username="sam", is_staff=True, email="sam@example.com")
    grant_inbox(support, sam, perms=("view_inbox", "manage_inbox"))
    assign_perm("manage_team", sam, team)
    olga = make_user(roles.SUPERVISOR, username="olga", is_staff=True, email="olga@example.com")
    respond(AlertKind.DENIED_BURST, ResponseKind.NOTIFY)
    return {"alice": alice, "sam": sam, "olga": olga}


async def test_the_supervisor_of_the_account_hears_of_the_alert_on_the_open_page(make_user: Any) -> None:
    people = await db(supervised)(make_user)
    sam_socket, connected, _ = await agent_socket(people["sam"])
    olga_socket, olga_connected, _ = await agent_socket(people["olga"])
    alice_socket, alice_connected, _ = await agent_socket(people["alice"])
    assert connected and olga_connected and alice_connected

    alert = await db(alert_raise)(finding(people["alice"], kind=AlertKind.DENIED_BURST, pattern="denied"))
    assert alert is not None
    frame = await sam_socket.receive_json_from(timeout=5)
    assert frame == {
        "type": "security.alert",
        "alert_id": alert.pk,
        "kind": "denied_burst",
        "severity": "Medium",
        "summary": alert.summary,
    }
    # olga supervises another segment; alice is the subject: neither is told.
    assert await olga_socket.receive_nothing(timeout=0.5)
    assert await alice_socket.receive_nothing(timeout=0.5)


def test_the_email_names_the_alert_and_holds_no_evidence(make_user: Any) -> None:
    people = supervised(make_user)
    alert = alert_raise(finding(people["alice"], kind=AlertKind.DENIED_BURST, pattern="denied"))
    assert alert is not None
    notified = alert.responses.get(response=ResponseKind.NOTIFY)
    assert notified.detail == {"supervisors": [people["sam"].pk]}
    assert alert_email_send(alert_id=alert.pk, recipient_ids=notified.detail["supervisors"]) == 1
    [message] = mail.outbox
    assert message.to == ["sam@example.com"]
    assert f"#{alert.pk}" in message.body and "hour" not in message.body


def test_a_mail_server_that_is_down_fails_nothing_that_raised_the_alert(
    make_user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Tasks run in the request where no Redis is configured (`make run`): the notification's
    email then fails inside the sign-in that raised the alert. It is logged and retried, the
    alert and its responses stand, and the caller goes on."""
    from config.celery import app
    from tests.browser import free_port

    people = supervised(make_user)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)

    alert = alert_raise(finding(people["alice"], kind=AlertKind.DENIED_BURST, pattern="denied"))

    assert alert is not None and alert.responses.filter(response=ResponseKind.NOTIFY).exists()
    assert "in on_commit()" in caplog.text and "Connection refused" in caplog.text
