"""Two-step sign-in through the real views, checked with an independent TOTP generator."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import EnrollmentCode, User, UserSession
from accounts.supervision import enrollment_code_issue
from audit.models import SecurityEvent
from tests.conftest import PASSWORD, start_session, totp_of

pytestmark = pytest.mark.django_db


def password_step(client: Client, username: str, password: str = PASSWORD) -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password, "next": "/"})


def otp_step(client: Client, code: str) -> Any:
    return client.post("/accounts/verify/", {"token": code, "next": "/"})


def kinds(user: User | None = None) -> list[str]:
    events = SecurityEvent.objects.order_by("pk")
    if user is not None:
        events = events.filter(user=user)
    return list(events.values_list("kind", flat=True))


def test_password_then_totp_reaches_the_inbox(make_user: Any) -> None:
    user = make_user("Agent")
    client = Client()
    response = password_step(client, user.username)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/verify/")
    # Password alone opens nothing.
    assert client.get("/").status_code == 302

    response = otp_step(client, totp_of(TOTPDevice.objects.get(user=user)).now())
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert b"Inbox" in page.content
    assert kinds(user) == ["login_succeeded", "otp_succeeded"]


# Twelve failures in a row, measured: the throttle would refuse the later ones unhashed.
@override_settings(LOGIN_THROTTLE_ACCOUNT_DELAY_AFTER=100)
def test_unknown_user_and_wrong_password_look_the_same(make_user: Any) -> None:
    user = make_user("Agent")
    client = Client()
    wrong = password_step(client, user.username, "not the password at all")
    unknown = password_step(client, "nobody-by-this-name", "not the password at all")
    assert wrong.status_code == unknown.status_code == 400
    assert b"Invalid username or password." in wrong.content
    assert b"Invalid username or password." in unknown.content

    def timed(username: str) -> float:
        started = time.perf_counter()
        password_step(Client(), username, "wrong password 123")
        return time.perf_counter() - started

    known_times = [timed(user.username) for _ in range(5)]
    unknown_times = [timed("nobody-by-this-name") for _ in range(5)]
    # Both paths run the password hasher; without it the unknown path is ~10x faster.
    ratio = statistics.median(unknown_times) / statistics.median(known_times)
    assert 0.5 < ratio < 2.0, ratio
    failed = SecurityEvent.objects.filter(kind="login_failed")
    assert failed.count() == 12
    assert set(failed.values_list("username_attempted", flat=True)) == {user.username, "nobody-by-this-name"}


@pytest.mark.parametrize(
    "data",
    [
        {"username": "x" * 5000, "password": "y"},
        {"username": "someone", "password": "p" * 5000},
        {"username": "", "password": ""},
        {"username": "\x00\x01", "password": "x"},
    ],
)
def test_malformed_login_input_is_a_form_error(data: dict[str, str]) -> None:
    response = Client().post("/accounts/login/", data)
    assert response.status_code == 400
    assert b'class="error"' in response.content


def test_undecodable_login_bytes_are_a_form_error() -> None:
    response = Client().post(
        "/accounts/login/",
        b"username=%FF%FE&password=%C3%28",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert b'class="error"' in response.content


def test_totp_drift_of_one_step_either_way_is_accepted(make_user: Any) -> None:
    user = make_user("Agent")
    generator = totp_of(TOTPDevice.objects.get(user=user))
    now = time.time()
    for offset in (-30, 30):
        client = Client()
        password_step(client, user.username)
        assert otp_step(client, generator.at(now + offset)).status_code == 302, offset
        # An accepted code records its step and the clock drift; start the next case afresh.
        TOTPDevice.objects.filter(user=user).update(last_t=-1, drift=0)


def test_totp_far_outside_the_window_is_refused(make_user: Any) -> None:
    user = make_user("Agent")
    client = Client()
    password_step(client, user.username)
    response = otp_step(client, totp_of(TOTPDevice.objects.get(user=user)).at(time.time() - 120))
    assert response.status_code == 400
    assert b"not valid" in response.content


def test_a_totp_code_is_accepted_once_only(make_user: Any) -> None:
    user = make_user("Agent")
    code = totp_of(TOTPDevice.objects.get(user=user)).now()
    first, second = Client(), Client()
    password_step(first, user.username)
    password_step(second, user.username)
    assert otp_step(first, code).status_code == 302
    replay = otp_step(second, code)
    assert replay.status_code == 400
    assert second.get("/").status_code == 302


def test_wrong_codes_are_throttled_with_a_clear_message(make_user: Any) -> None:
    user = make_user("Agent")
    client = Client()
    password_step(client, user.username)
    assert b"not valid" in otp_step(client, "000000").content
    response = otp_step(client, totp_of(TOTPDevice.objects.get(user=user)).now())
    # Even the right code waits out the back-off: guessing cannot outrun it.
    assert response.status_code == 400
    assert b"Too many failed codes. Wait" in response.content


@override_settings(OTP_LOCKOUT_THRESHOLD=4)
def test_repeated_failures_lock_the_account(make_user: Any) -> None:
    user = make_user("Agent")
    other = Client()
    start_session(other, user, verified=True)
    client = Client()
    password_step(client, user.username)
    for _ in range(3):
        assert otp_step(client, "123456").status_code == 400
    response = otp_step(client, "123456")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    user.refresh_from_db()
    assert user.is_locked
    # Every session of the account ended, not only the guessing one.
    assert not UserSession.objects.filter(user=user, ended_at__isnull=True).exists()
    assert other.get("/").status_code == 302
    # The right password now gets a wrong password's answer (no oracle) and no session.
    again = password_step(Client(), user.username)
    assert again.status_code == 400
    assert b"Invalid username or password." in again.content
    assert "lockout" in kinds(user)
    assert "login_locked" in kinds(user)


def test_backup_codes_are_single_use(make_user: Any) -> None:
    user = make_user("Agent")
    device = StaticDevice.objects.create(user=user, name="backup codes", confirmed=True)
    device.token_set.create(token="abcd2345ef")
    client = Client()
    password_step(client, user.username)
    assert otp_step(client, "ABCD 2345EF").status_code == 302
    assert "backup_code_used" in kinds(user)
    again = Client()
    password_step(again, user.username)
    assert otp_step(again, "abcd2345ef").status_code == 400


def redeem_enrollment_code(client: Client, user: Any) -> None:
    """What a person does with the code a supervisor handed them after an approved reset."""
    code = enrollment_code_issue(user=user, purpose=EnrollmentCode.Purpose.FACTOR_RESET, change=None)
    response = client.post("/accounts/activate/", {"username": user.username, "code": code})
    assert response["Location"].startswith("/accounts/enroll/")


def test_first_sign_in_forces_enrollment_and_shows_backup_codes_once(make_user: Any) -> None:
    user = make_user("Agent", enrolled=False)
    client = Client()
    response = password_step(client, user.username)
    assert response["Location"].startswith("/accounts/enroll/")
    assert client.get("/").status_code == 302  # nothing else opens before enrolling
    # The password alone does not open enrollment: the enrollment code does.
    assert client.get("/accounts/enroll/")["Location"].startswith("/accounts/activate/")
    assert not TOTPDevice.objects.filter(user=user).exists()
    redeem_enrollment_code(client, user)
    page = client.get("/accounts/enroll/")
    assert page.status_code == 200
    assert b"<svg" in page.content
    pending = TOTPDevice.objects.get(user=user, confirmed=False)
    key = page.context["manual_key"].replace(" ", "")
    assert pyotp.TOTP(key).now() == totp_of(pending).now()

    bad = client.post("/accounts/enroll/", {"device_id": pending.pk, "token": "12"})
    assert bad.status_code == 400
    done = client.post("/accounts/enroll/", {"device_id": pending.pk, "token": pyotp.TOTP(key).now()})
    assert done.status_code == 200
    codes = done.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/").status_code == 200
    # Shown once: nothing on any later page repeats them.
    assert codes[0].encode() not in client.get("/accounts/security/").content
    assert "enrolled" in kinds(user)


def test_expired_enrollment_is_refused_and_replaced(make_user: Any) -> None:
    user = make_user("Agent", enrolled=False)
    client = Client()
    password_step(client, user.username)
    redeem_enrollment_code(client, user)
    client.get("/accounts/enroll/")
    stale = TOTPDevice.objects.get(user=user, confirmed=False)
    TOTPDevice.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=1))
    response = client.post("/accounts/enroll/", {"device_id": stale.pk, "token": totp_of(stale).now()})
    assert response.status_code == 400
    assert b"expired" in response.content
    fresh = TOTPDevice.objects.get(user=user, confirmed=False)
    assert fresh.pk != stale.pk


def test_replacing_the_authenticator_needs_a_fresh_code(make_user: Any) -> None:
    user = make_user("Agent")
    client = Client()
    start_session(client, user, verified=True)
    session = client.session
    session["portcullis_otp_verified_at"] = time.time() - 3600
    session.save()
    # A stale verification does not open enrollment of a new authenticator.
    assert client.get("/accounts/enroll/")["Location"].startswith("/accounts/verify/")
    refused = client.post("/accounts/security/", {"action": "replace_authenticator", "token": "000000"})
    assert refused.status_code == 400
    TOTPDevice.objects.filter(user=user).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    code = totp_of(TOTPDevice.objects.get(user=user, confirmed=True)).now()
    ok = client.post("/accounts/security/", {"action": "replace_authenticator", "token": code})
    assert ok["Location"] == "/accounts/enroll/"
    assert client.get("/accounts/enroll/").status_code == 200


def test_logout_ends_the_session_and_everywhere_ends_all(make_user: Any) -> None:
    user = make_user("Agent")
    laptop, phone, desk = Client(), Client(), Client()
    for client in (laptop, phone, desk):
        start_session(client, user, verified=True)
    laptop.post("/accounts/logout/")
    assert laptop.get("/").status_code == 302
    assert phone.get("/").status_code == 200
    phone.post("/accounts/logout/everywhere/")
    assert phone.get("/").status_code == 302
    assert desk.get("/").status_code == 302
    assert not UserSession.objects.filter(user=user, ended_at__isnull=True).exists()
    assert {"logout", "logout_everywhere"} <= set(kinds(user))


def test_session_is_bound_to_its_browser(make_user: Any) -> None:
    user = make_user("Agent")
    client = Client()
    start_session(client, user, verified=True)
    assert client.get("/").status_code == 200
    stolen = client.get("/", HTTP_USER_AGENT="curl/8.0")
    assert stolen.status_code == 302
    assert client.get("/").status_code == 302  # ended for good, not just for that request
    assert SecurityEvent.objects.filter(kind="session_ended", detail__reason="device_changed").exists()


def test_idle_and_absolute_timeouts_end_the_session(make_user: Any) -> None:
    user = make_user("Agent")
    idle, old = Client(), Client()
    start_session(idle, user, verified=True)
    start_session(old, user, verified=True)
    session = idle.session
    session["portcullis_last_seen"] = time.time() - 31 * 60
    session.save()
    session = old.session
    session["portcullis_session_started"] = time.time() - 13 * 3600
    session.save()
    assert idle.get("/").status_code == 302
    assert old.get("/").status_code == 302
    reasons = set(UserSession.objects.filter(user=user).values_list("end_reason", flat=True))
    assert reasons == {"idle", "absolute"}


def test_csrf_is_enforced_on_login_and_logout(make_user: Any) -> None:
    user = make_user("Agent")
    client = Client(enforce_csrf_checks=True)
    assert (
        client.post("/accounts/login/", {"username": user.username, "password": PASSWORD}).status_code == 403
    )
    start_session(client, user, verified=True)
    assert client.post("/accounts/logout/").status_code == 403
    assert client.get("/").status_code == 200


def test_security_events_never_hold_secrets(make_user: Any) -> None:
    from auditlog.models import LogEntry

    user = make_user("Agent")
    device = TOTPDevice.objects.get(user=user)
    codes: list[str] = []
    client = Client()
    password_step(client, user.username, "a wrong password for the log")
    password_step(client, user.username)
    codes.append("654321")
    otp_step(client, "654321")
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_count=0, throttling_failure_timestamp=None
    )
    code = totp_of(device).now()
    codes.append(code)
    otp_step(client, code)
    session_key = client.session.session_key
    client.post("/accounts/logout/")

    dumped = repr(list(SecurityEvent.objects.values())) + repr(list(LogEntry.objects.values()))
    for secret in [PASSWORD, "a wrong password for the log", device.key, session_key, *codes]:
        assert secret and secret not in dumped, secret
    assert kinds() == ["login_failed", "login_succeeded", "otp_failed", "otp_succeeded", "logout"]
