"""The password step's throttle, per account and per address, through the real views.

The throttle decides with `accounts.throttle.clock`; the `clock` fixture replaces it so a
test can step past a delay or a block without waiting.
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

import pytest
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from accounts import throttle
from audit.models import SecurityEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "not the password at all"
# An address budget far out of reach, for tests about the account budget (and back).
ROOMY = 1000


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(throttle, "clock", fake)
    return fake


def sign_in(username: str, password: str = PASSWORD, *, address: str = "127.0.0.1") -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/accounts/login/", {"username": username, "password": password, "next": "/"}
    )


def alert(response: Any) -> str:
    """The form's error box: what the person is told."""
    match = re.search(rb'<div class="error" role="alert">(.*?)</div>', response.content, re.S)
    assert match is not None, response.content
    return match.group(1).decode()


def page_without_csrf(response: Any) -> bytes:
    # The CSRF token is masked afresh on every render; everything else must match byte for byte.
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", response.content)


def kind_count(kind: str) -> int:
    return SecurityEvent.objects.filter(kind=kind).count()


@override_settings(
    LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER=3,
    LOGIN_THROTTLE_ACCOUNT_BLOCK_AFTER=10,
    LOGIN_THROTTLE_ADDRESS_DELAY_AFTER=ROOMY,
)
def test_account_failures_bring_a_doubling_delay_from_any_address(make_user: Any, clock: Clock) -> None:
    user = make_user("Agent")
    for n in range(3):
        assert sign_in(user.username, WRONG, address=f"192.0.2.{n + 1}").status_code == 400

    # From yet another address, and with the right password: refused unchecked.
    refused = sign_in(user.username, address="192.0.2.99")
    assert refused.status_code == 429 and refused["Retry-After"] == "1"
    assert "Too many sign-in attempts. Wait 1 second before trying again." in alert(refused)
    event = SecurityEvent.objects.get(kind="login_throttled")
    assert event.username_attempted == user.username and event.ip_address == "192.0.2.99"
    assert event.detail == {"retry_after": 1}

    clock.advance(1)
    assert sign_in(user.username, WRONG).status_code == 400
    assert sign_in(user.username)["Retry-After"] == "2"
    clock.advance(2)
    assert sign_in(user.username).status_code == 302
    assert kind_count("login_throttled") == 2


@override_settings(
    LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER=ROOMY,
    LOGIN_THROTTLE_ADDRESS_DELAY_AFTER=3,
    LOGIN_THROTTLE_ADDRESS_BLOCK_AFTER=10,
)
def test_address_failures_slow_every_name_tried_from_there(make_user: Any, clock: Clock) -> None:
    user = make_user("Agent")
    # Three neighbours in one IPv6 /64 count as one client.
    for n in range(3):
        assert sign_in(f"guess{n}", WRONG, address=f"2001:db8:1:2::{n + 1}").status_code == 400

    refused = sign_in(user.username, address="2001:db8:1:2::ff")
    assert refused.status_code == 429 and refused["Retry-After"] == "1"
    # The same account from elsewhere is not slowed by this address's failures.
    assert sign_in(user.username, address="2001:db8:9:9::1").status_code == 302


@override_settings(
    LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER=2,
    LOGIN_THROTTLE_ACCOUNT_BLOCK_AFTER=4,
    LOGIN_THROTTLE_ADDRESS_DELAY_AFTER=ROOMY,
    LOGIN_THROTTLE_BLOCK=timezone.timedelta(minutes=15),
)
def test_a_temporary_block_follows_the_delays_and_then_lifts(make_user: Any, clock: Clock) -> None:
    user = make_user("Agent")
    for wait in (0, 0, 1, 2):
        clock.advance(wait)
        assert sign_in(user.username, WRONG).status_code == 400

    blocked = sign_in(user.username)
    assert blocked.status_code == 429 and blocked["Retry-After"] == "900"
    clock.advance(899)
    assert sign_in(user.username)["Retry-After"] == "1"

    clock.advance(1)
    assert sign_in(user.username).status_code == 302
    # The right password cleared the account's failures: one slip is no longer punished.
    assert sign_in(user.username, WRONG).status_code == 400
    assert sign_in(user.username).status_code == 302


@override_settings(LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER=ROOMY, LOGIN_THROTTLE_ADDRESS_DELAY_AFTER=ROOMY)
def test_a_locked_account_answers_the_right_password_like_a_wrong_one(make_user: Any) -> None:
    user = make_user("Agent", locked_at=timezone.now(), lock_reason="test")
    right, wrong = sign_in(user.username), sign_in(user.username, WRONG)
    assert right.status_code == wrong.status_code == 400
    assert page_without_csrf(right) == page_without_csrf(wrong)
    assert "Invalid username or password." in alert(right)
    assert b"locked" not in right.content
    # The audit trail still tells a supervisor which attempt had the password.
    assert list(SecurityEvent.objects.filter(user=user).values_list("kind", flat=True)) == ["login_locked"]
    assert kind_count("login_failed") == 1

    def timed(password: str) -> float:
        started = time.perf_counter()
        sign_in(user.username, password)
        return time.perf_counter() - started

    # Both run the password hasher: the right password must not come back faster or slower.
    # Interleaved, so a burst of load on the machine slows both alike.
    samples: dict[str, list[float]] = {PASSWORD: [], WRONG: []}
    for _ in range(5):
        for password, times in samples.items():
            times.append(timed(password))
    ratio = statistics.median(samples[PASSWORD]) / statistics.median(samples[WRONG])
    assert 0.5 < ratio < 2.0, ratio


@override_settings(LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER=2, LOGIN_THROTTLE_ADDRESS_DELAY_AFTER=ROOMY)
def test_a_locked_accounts_right_password_counts_towards_the_throttle(make_user: Any, clock: Clock) -> None:
    locked = make_user("Agent", locked_at=timezone.now(), lock_reason="test")
    other = make_user("Agent")
    for _ in range(2):
        sign_in(locked.username)
        sign_in(other.username, WRONG)
    for password in (PASSWORD, WRONG):
        assert alert(sign_in(locked.username, password)) == alert(sign_in(other.username, password))
        assert sign_in(locked.username, password).status_code == 429


@override_settings(LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER=2, LOGIN_THROTTLE_ADDRESS_DELAY_AFTER=ROOMY)
def test_an_unknown_name_is_throttled_exactly_like_a_known_one(make_user: Any, clock: Clock) -> None:
    user = make_user("Agent")
    for _ in range(2):
        sign_in(user.username, WRONG)
        sign_in("nobody-by-this-name", WRONG)
    known, unknown = sign_in(user.username), sign_in("nobody-by-this-name", WRONG)
    assert known.status_code == unknown.status_code == 429
    assert known["Retry-After"] == unknown["Retry-After"] == "1"
    assert alert(known) == alert(unknown)
    # Case and width variants of a name share its budget instead of opening new ones.
    assert sign_in("NOBODY-by-this-name", WRONG).status_code == 429


@override_settings(
    LOGIN_STUFFING_USERNAMES=5,
    LOGIN_STUFFING_WINDOW=timezone.timedelta(minutes=15),
    LOGIN_THROTTLE_ADDRESS_DELAY_AFTER=ROOMY,
)
def test_many_names_failing_from_one_address_is_one_stuffing_event_per_window(clock: Clock) -> None:
    # Names repeated do not add up: four names tried three times each is not stuffing.
    for _ in range(3):
        for n in range(4):
            sign_in(f"victim{n}", WRONG, address="203.0.113.7")
    assert kind_count("credential_stuffing") == 0

    # Counted per address: four of the names from a second address stay below the threshold.
    for n in range(4, 12):
        sign_in(f"victim{n}", WRONG, address="203.0.113.7")
        if n < 8:
            sign_in(f"victim{n}", WRONG, address="198.51.100.1")
    event = SecurityEvent.objects.get(kind="credential_stuffing")
    assert event.ip_address == "203.0.113.7" and event.username_attempted == "victim4"
    assert event.severity == "critical"
    assert event.detail == {"usernames": 5, "window_seconds": 900}

    clock.advance(15 * 60)
    for n in range(5):
        sign_in(f"next{n}", WRONG, address="203.0.113.7")
    assert kind_count("credential_stuffing") == 2
