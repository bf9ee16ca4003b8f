"""Friendly ends: the idle warning's clock and keep-alive, and the sign-in page saying why
the server ended a session."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.test import Client

from accounts.models import UserSession
from accounts.services import sessions_end_all
from accounts.views import ended_message
from audit.models import SecurityEvent
from tests.conftest import start_session

pytestmark = pytest.mark.django_db


def test_every_end_reason_has_its_own_words_and_nothing_else_has_any() -> None:
    words = {reason: ended_message(reason) for reason in UserSession.EndReason.values}
    assert all(words.values())
    assert len(set(words.values())) == len(words)
    assert ended_message("idle") == "You were signed out after 30 minutes without activity."
    assert ended_message("<script>alert(1)</script>") is None
    assert ended_message("") is None


def _login_page_after(client: Client) -> str:
    response = client.get("/conversations/1/", follow=True)
    assert response.redirect_chain[0][0].startswith("/accounts/login/?next=")
    return response.content.decode()


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        (UserSession.EndReason.REVOKED, "A supervisor ended your session."),
        (UserSession.EndReason.LOGOUT_EVERYWHERE, "You signed out everywhere"),
        (UserSession.EndReason.LOCKED, "This account is locked"),
        (UserSession.EndReason.FACTOR_CHANGED, "Your second factor was changed"),
    ],
)
def test_a_session_ended_elsewhere_is_told_why_once(make_user: Any, reason: str, words: str) -> None:
    user = make_user("Agent")
    client = Client()
    start_session(client, user, verified=True)
    sessions_end_all(user=user, reason=UserSession.EndReason(reason))
    events_before = SecurityEvent.objects.count()
    page = _login_page_after(client)
    assert re.search(rf'<p class="notice" role="status">{re.escape(words)}', page)
    # Whoever ended it recorded it; the gate that noticed adds nothing.
    assert SecurityEvent.objects.count() == events_before
    assert words not in client.get("/accounts/login/").content.decode()


def test_timeouts_and_a_changed_browser_are_told_why(make_user: Any) -> None:
    user = make_user("Agent")
    idle, old, moved = Client(), Client(), Client(HTTP_USER_AGENT="Another browser")
    for client in (idle, old, moved):
        start_session(client, user, verified=True)
    session = idle.session
    session["portcullis_last_seen"] = time.time() - 31 * 60
    session.save()
    session = old.session
    session["portcullis_session_started"] = time.time() - 13 * 3600
    session.save()
    # `moved` was bound to a browser without a User-Agent: the stolen-cookie case.
    assert "after 30 minutes without activity" in _login_page_after(idle)
    assert "Sessions last at most 12 hours." in _login_page_after(old)
    assert "Your browser changed since you signed in" in _login_page_after(moved)


def test_pages_carry_the_session_clock_and_keep_alive_restarts_it(make_user: Any) -> None:
    user = make_user("Agent")
    client = Client()
    start_session(client, user, verified=True)
    session = client.session
    # Within the minute the gate would not write last-seen again: keep-alive must.
    session["portcullis_last_seen"] = time.time() - 40
    session.save()
    page = client.get("/").content.decode()
    clock = re.search(r'data-idle-seconds="(\d+)"', page)
    assert clock and 1755 <= int(clock.group(1)) <= 1760
    assert 'data-warning-seconds="120"' in page
    assert 'role="alertdialog"' in page and 'aria-live="assertive"' in page

    assert client.get("/accounts/session/keepalive/").status_code == 405
    answer = client.post("/accounts/session/keepalive/").json()
    assert 1798 <= answer["idle_seconds"] <= 1800
    assert 12 * 3600 - 60 <= answer["absolute_seconds"] <= 12 * 3600
    assert time.time() - client.session["portcullis_last_seen"] < 5
    last_seen = UserSession.objects.get(user=user).last_seen_at.timestamp()
    assert time.time() - last_seen < 5


def test_no_clock_before_verification(make_user: Any) -> None:
    user = make_user("Agent")
    client = Client()
    start_session(client, user, verified=False)
    page = client.get("/accounts/verify/").content.decode()
    assert "session-clock" not in page and "session.js" not in page
