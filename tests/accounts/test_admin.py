"""The supervisors' admin: OTP-guarded, and no self-escalation."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts import roles
from accounts.models import ChangeRequest, User
from tests.conftest import start_session

pytestmark = pytest.mark.django_db


def change_form_data(user: User, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "groups": [g.pk for g in user.groups.all()],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    if user.is_staff:
        data["is_staff"] = "on"
    data.update(overrides)
    return data


def test_admin_needs_a_verified_session(make_user: Any) -> None:
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    client = Client()
    assert client.get("/admin/")["Location"].startswith("/accounts/login/")
    start_session(client, supervisor, verified=False)
    assert client.get("/admin/")["Location"].startswith("/accounts/verify/")
    verified = Client()
    start_session(verified, supervisor, verified=True)
    assert verified.get("/admin/").status_code == 200
    assert verified.get("/admin/accounts/user/").status_code == 200
    assert verified.get("/admin/otp_totp/totpdevice/").status_code == 200


def test_verified_non_staff_gets_no_admin(make_user: Any, verified_client: Any) -> None:
    agent = make_user(roles.AGENT)
    client = verified_client(agent)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 403
    assert client.get("/admin/accounts/user/", follow=True).status_code == 403


def test_supervisor_cannot_raise_own_privileges(make_user: Any, verified_client: Any) -> None:
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    client = verified_client(supervisor)
    admin_group = Group.objects.get(name=roles.ADMINISTRATOR)
    client.post(
        f"/admin/accounts/user/{supervisor.pk}/change/",
        change_form_data(supervisor, groups=[admin_group.pk], is_superuser="on"),
    )
    supervisor.refresh_from_db()
    assert not supervisor.is_superuser
    assert not supervisor.groups.filter(name=roles.ADMINISTRATOR).exists()


def test_supervisor_cannot_grant_administrator_to_others(make_user: Any, verified_client: Any) -> None:
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    agent = make_user(roles.AGENT)
    client = verified_client(supervisor)
    admin_group = Group.objects.get(name=roles.ADMINISTRATOR)
    response = client.post(
        f"/admin/accounts/user/{agent.pk}/change/",
        change_form_data(agent, groups=[admin_group.pk], is_superuser="on"),
    )
    assert response.status_code == 200  # the form comes back with an error
    assert b"Select a valid choice" in response.content
    agent.refresh_from_db()
    assert not agent.is_superuser
    assert not agent.groups.filter(name=roles.ADMINISTRATOR).exists()
    # An ordinary role is a change request with a reason, for a second supervisor.
    agent_group = Group.objects.get(name=roles.AGENT)
    supervisor_group = Group.objects.get(name=roles.SUPERVISOR)
    no_reason = client.post(
        f"/admin/accounts/user/{agent.pk}/change/",
        change_form_data(agent, groups=[agent_group.pk, supervisor_group.pk]),
    )
    assert no_reason.status_code == 200 and b"Say why" in no_reason.content
    ok = client.post(
        f"/admin/accounts/user/{agent.pk}/change/",
        change_form_data(agent, groups=[agent_group.pk, supervisor_group.pk], change_reason="team lead"),
    )
    assert ok.status_code == 302
    assert not agent.groups.filter(name=roles.SUPERVISOR).exists()
    change = ChangeRequest.objects.get(subject=agent)
    assert change.kind == "add_to_group" and change.state == "pending" and change.reason == "team lead"


def test_supervisor_cannot_edit_an_administrator(make_user: Any, verified_client: Any) -> None:
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    administrator = make_user(roles.ADMINISTRATOR, is_staff=True)
    client = verified_client(supervisor)
    client.post(
        f"/admin/accounts/user/{administrator.pk}/change/",
        change_form_data(administrator, is_active=""),
    )
    administrator.refresh_from_db()
    assert administrator.is_active


def test_reset_second_factor_from_the_admin_is_a_change_request(make_user: Any, verified_client: Any) -> None:
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    agent = make_user(roles.AGENT)
    client = verified_client(supervisor)
    response = client.post(
        "/admin/accounts/user/",
        {"action": "reset_second_factor", "_selected_action": [agent.pk]},
    )
    assert response.status_code == 302
    assert response["Location"] == f"/admin/accounts/changerequest/add/?kind=reset_factor&subject={agent.pk}"
    # Nothing is reset by one person.
    assert agent.totpdevice_set.exists()
    form = client.get(response["Location"]).context["adminform"].form
    assert form.initial["subjects"] == [str(agent.pk)]


def test_unlock_from_the_admin(make_user: Any, verified_client: Any) -> None:
    from django.utils import timezone

    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    agent = make_user(roles.AGENT, locked_at=timezone.now(), lock_reason="test", otp_failure_count=10)
    verified_client(supervisor).post(
        "/admin/accounts/user/", {"action": "unlock_accounts", "_selected_action": [agent.pk]}
    )
    agent.refresh_from_db()
    assert not agent.is_locked and agent.otp_failure_count == 0


def test_auditlog_records_group_changes_with_the_actor(make_user: Any, verified_client: Any) -> None:
    from auditlog.models import LogEntry

    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    agent = make_user(roles.AGENT, roles.BILLING_AGENT)
    # Taking a role away only narrows access: it applies at once, recorded with the actor.
    verified_client(supervisor).post(
        f"/admin/accounts/user/{agent.pk}/change/",
        change_form_data(agent, groups=[Group.objects.get(name=roles.AGENT).pk]),
    )
    assert not agent.groups.filter(name=roles.BILLING_AGENT).exists()
    entries = LogEntry.objects.get_for_object(agent).filter(actor=supervisor)
    assert entries.exists()
    assert any("groups" in (e.changes_dict or {}) for e in entries)
