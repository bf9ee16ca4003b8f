"""Local passwords switched off per role once SSO is in place; administrators keep theirs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.test import Client

from accounts import roles
from accounts.models import LocalSignInRule, User
from audit.models import SecurityEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _password_step(username: str) -> int:
    response = Client().post("/accounts/login/", {"username": username, "password": PASSWORD})
    return response.status_code


def test_an_idp_only_role_cannot_sign_in_with_its_password(make_user: Callable[..., User]) -> None:
    LocalSignInRule.objects.create(role=Group.objects.get(name=roles.AGENT), local_sign_in_allowed=False)
    agent = make_user(roles.AGENT)
    wrong = Client().post("/accounts/login/", {"username": agent.username, "password": "wrong"})

    right = Client().post("/accounts/login/", {"username": agent.username, "password": PASSWORD})

    # Answered like a wrong password: the page does not confirm the password.
    assert right.status_code == 400
    assert right.content.decode().count("errorlist") == wrong.content.decode().count("errorlist")
    event = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.LOGIN_FAILED, user=agent).get()
    assert event.detail == {"refused": "local_sign_in_off"}


def test_administrators_keep_their_local_sign_in_for_break_glass(make_user: Callable[..., User]) -> None:
    for role in (roles.AGENT, roles.SUPERVISOR):
        LocalSignInRule.objects.create(role=Group.objects.get(name=role), local_sign_in_allowed=False)
    administrator = make_user(roles.ADMINISTRATOR, roles.SUPERVISOR)
    supervisor = make_user(roles.SUPERVISOR)

    assert _password_step(administrator.username) == 302
    assert _password_step(supervisor.username) == 400
    with pytest.raises(ValidationError):
        LocalSignInRule(
            role=Group.objects.get(name=roles.ADMINISTRATOR), local_sign_in_allowed=False
        ).full_clean()


def test_roles_without_a_rule_keep_passwords(make_user: Callable[..., User]) -> None:
    assert _password_step(make_user(roles.AGENT).username) == 302
