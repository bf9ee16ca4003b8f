"""Writes for sign-in, second factors and sessions."""

from __future__ import annotations

import enum
import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

import django_otp
from django.conf import settings
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.devices.services import device_session_bind
from accounts.live import sockets_recheck
from accounts.models import BrowserDevice, Passkey, User, UserSession
from audit.services import SESSION_ID_KEY, Kind, Severity, client_ip, security_event_record

SESSION_STARTED_KEY = "portcullis_session_started"
SESSION_LAST_SEEN_KEY = "portcullis_last_seen"
OTP_VERIFIED_AT_KEY = "portcullis_otp_verified_at"
# Set in the anonymous session that follows one the server ended: the EndReason's value.
SESSION_ENDED_REASON_KEY = "portcullis_ended_reason"
# Unix time after which a session opened by an identity provider must sign in there again.
IDP_REAUTHENTICATE_AT_KEY = "portcullis_idp_reauthenticate_at"
# The IdP's assurance for a session it verified: the policy's `authenticator` signal.
IDP_ASSURANCE_KEY = "portcullis_idp_assurance"
# What the passkey that verified this session proved (PasskeyFlags): the policy's
# "device-bound passkey" signal. Set or removed with the verifying device, never apart.
PASSKEY_FLAGS_KEY = "portcullis_passkey_flags"
BACKUP_DEVICE_NAME = "backup codes"
TOTP_DEVICE_NAME = "authenticator"


def user_agent_hash(request: HttpRequest) -> str:
    return hashlib.sha256(request.META.get("HTTP_USER_AGENT", "").encode()).hexdigest()


def session_otp_device(*, session: SessionBase, user: User) -> Device | None:
    """The confirmed second-factor device that verified this session, if any."""
    persistent_id = session.get(django_otp.DEVICE_ID_SESSION_KEY)
    if not persistent_id:
        return None
    device = Device.from_persistent_id(persistent_id)
    if device is None or device.user_id != user.pk or not device.confirmed:
        return None
    return device


# --- Sessions ---------------------------------------------------------------------------


def session_start(*, request: HttpRequest, user: User) -> UserSession:
    """Sign the user in with their password: the session is not verified yet."""
    auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    record = UserSession.objects.create(
        user=user,
        ip_address=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300].replace("\x00", ""),
        user_agent_hash=user_agent_hash(request),
    )
    now = timezone.now().timestamp()
    request.session[SESSION_ID_KEY] = record.pk
    request.session[SESSION_STARTED_KEY] = now
    request.session[SESSION_LAST_SEEN_KEY] = now
    device_session_bind(request=request, user=user, record=record)
    return record


def session_end(*, request: HttpRequest, reason: UserSession.EndReason) -> None:
    """End the current browser session, on the server and in the browser."""
    session_id = request.session.get(SESSION_ID_KEY)
    if session_id is not None:
        UserSession.objects.filter(pk=session_id, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=reason
        )
    if request.user.is_authenticated:
        sockets_recheck(user_ids=[request.user.pk])
    auth_logout(request)


def sessions_end_all(*, user: User, reason: UserSession.EndReason) -> int:
    """End every open session of a user: refused at its next request; open sockets close now."""
    count = UserSession.objects.filter(user=user, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason
    )
    sockets_recheck(user_ids=[user.pk])
    return count


# --- Second factor ----------------------------------------------------------------------


class OTPOutcome(enum.Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    THROTTLED = "throttled"
    LOCKED = "locked"


@dataclass(frozen=True)
class OTPResult:
    outcome: OTPOutcome
    retry_after: datetime | None = None


class PasskeyFlags(TypedDict):
    """What one passkey assertion proved, as the session keeps it (JSON)."""

    device: str  # the verifying passkey's persistent id: flags of another device count for nothing
    device_bound: bool  # single-device credential, not backup eligible: the key cannot be synced
    user_verified: bool  # the assertion's UV flag: PIN, fingerprint or screen lock, not presence only
    aaguid: str


def session_mark_verified(
    request: HttpRequest, device: Device, *, passkey_flags: PasskeyFlags | None = None
) -> None:
    # A fresh session key on privilege change defeats session fixation.
    request.session.cycle_key()
    django_otp.login(request, device)
    request.session[OTP_VERIFIED_AT_KEY] = timezone.now().timestamp()
    # A later code step-up replaces the passkey as the verifying factor: its flags go with it.
    if passkey_flags is None:
        request.session.pop(PASSKEY_FLAGS_KEY, None)
    else:
        request.session[PASSKEY_FLAGS_KEY] = passkey_flags


def _throttled_until(devices: list[TOTPDevice | StaticDevice]) -> datetime | None:
    for device in devices:
        allowed, data = device.verify_is_allowed()
        if not allowed and data:
            return data.get("locked_until")
    return None


def _account_lock(*, user: User, reason: str, request: HttpRequest | None = None) -> None:
    user.locked_at = timezone.now()
    user.lock_reason = reason
    user.save(update_fields=["locked_at", "lock_reason", "otp_failure_count"])
    sessions_end_all(user=user, reason=UserSession.EndReason.LOCKED)
    security_event_record(
        kind=Kind.LOCKOUT,
        request=request,
        user=user,
        severity=Severity.CRITICAL,
        detail={"reason": reason},
    )


def otp_verify(*, request: HttpRequest, user: User, token: str) -> OTPResult:
    """Check a TOTP code or a backup code for the signed-in (not yet verified) user.

    Row locks serialise concurrent attempts, so one code cannot be accepted twice and
    throttling cannot be raced.
    """
    token = "".join(token.split()).lower()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if user.is_locked:
            return OTPResult(OTPOutcome.LOCKED)
        devices: list[TOTPDevice | StaticDevice] = [
            *TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True),
            *StaticDevice.objects.select_for_update().filter(user=user, confirmed=True),
        ]
        retry_after = _throttled_until(devices)
        accepted = None
        if retry_after is None:
            # Digits go to the authenticator, anything else can only be a backup code.
            kind = TOTPDevice if token.isdigit() and len(token) == 6 else StaticDevice
            accepted = next((d for d in devices if isinstance(d, kind) and d.verify_token(token)), None)
        if accepted is not None:
            user.otp_failure_count = 0
            user.save(update_fields=["otp_failure_count"])
            session_mark_verified(request, accepted)
            if isinstance(accepted, StaticDevice):
                security_event_record(
                    kind=Kind.BACKUP_CODE_USED,
                    request=request,
                    user=user,
                    severity=Severity.WARNING,
                    detail={"remaining": accepted.token_set.count()},
                )
            security_event_record(kind=Kind.OTP_SUCCEEDED, request=request, user=user)
            return OTPResult(OTPOutcome.ACCEPTED)

        user.otp_failure_count += 1
        kind_ = Kind.OTP_THROTTLED if retry_after else Kind.OTP_FAILED
        security_event_record(
            kind=kind_,
            request=request,
            user=user,
            severity=Severity.WARNING,
            detail={"consecutive_failures": user.otp_failure_count},
        )
        if user.otp_failure_count >= settings.OTP_LOCKOUT_THRESHOLD:
            _account_lock(
                user=user,
                request=request,
                reason=f"{user.otp_failure_count} consecutive failed second-factor codes",
            )
            return OTPResult(OTPOutcome.LOCKED)
        user.save(update_fields=["otp_failure_count"])
        if retry_after is None:
            retry_after = _throttled_until(devices)
        return OTPResult(
            OTPOutcome.THROTTLED if kind_ == Kind.OTP_THROTTLED else OTPOutcome.REFUSED, retry_after
        )


def verification_is_fresh(verified_at: float | None) -> bool:
    """Whether a second factor given at `verified_at` (Unix time) still counts as a step-up."""
    if verified_at is None:
        return False
    age = timezone.now().timestamp() - float(verified_at)
    return age <= settings.STEP_UP_MAX_AGE.total_seconds()


def step_up_is_fresh(request: HttpRequest) -> bool:
    return verification_is_fresh(request.session.get(OTP_VERIFIED_AT_KEY))


def has_confirmed_totp(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def totp_enrollment_device(*, user: User) -> TOTPDevice:
    """The pending (unconfirmed) authenticator shown as a QR; a stale one is replaced."""
    pending = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-created_at").first()
    if pending is not None and timezone.now() - pending.created_at <= settings.OTP_ENROLLMENT_TTL:
        return pending
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


class EnrollmentError(Exception):
    pass


def totp_enrollment_confirm(*, request: HttpRequest, user: User, device_id: int, token: str) -> list[str]:
    """Confirm a pending authenticator with its first code; returns fresh backup codes."""
    with transaction.atomic():
        device = (
            TOTPDevice.objects.select_for_update().filter(pk=device_id, user=user, confirmed=False).first()
        )
        if device is None or timezone.now() - device.created_at > settings.OTP_ENROLLMENT_TTL:
            raise EnrollmentError("This enrollment has expired. Scan the new QR code below.")
        if not device.verify_token("".join(token.split())):
            raise EnrollmentError("That code does not match. Check the time on your phone and try again.")
        TOTPDevice.objects.filter(user=user, confirmed=True).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        user.otp_failure_count = 0
        user.save(update_fields=["otp_failure_count"])
        session_mark_verified(request, device)
        security_event_record(kind=Kind.ENROLLED, request=request, user=user)
        return backup_codes_issue(request=request, user=user)


def backup_codes_issue(*, request: HttpRequest | None, user: User) -> list[str]:
    """Replace the user's backup codes; the plain codes are returned to be shown once."""
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name=BACKUP_DEVICE_NAME, confirmed=True)
        codes = [StaticToken.random_token() for _ in range(settings.BACKUP_CODE_COUNT)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
        security_event_record(kind=Kind.BACKUP_CODES_ISSUED, request=request, user=user)
    return codes


def second_factor_reset(*, user: User, by: User, request: HttpRequest | None = None) -> None:
    """Remove a user's second factors; their next sign-in enrolls anew.

    Every open session ends too: whoever held the old factor must not stay signed in.
    """
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        # Passkeys too: a lost phone's synced passkey would otherwise still sign in.
        Passkey.objects.filter(user=user).delete()
        sessions_end_all(user=user, reason=UserSession.EndReason.FACTOR_CHANGED)
        security_event_record(
            kind=Kind.FACTOR_RESET,
            request=request,
            user=user,
            severity=Severity.WARNING,
            detail={"by": by.get_username()},
        )


def account_unlock(*, user: User, by: User, request: HttpRequest | None = None) -> None:
    user.locked_at = None
    user.lock_reason = ""
    user.otp_failure_count = 0
    user.save(update_fields=["locked_at", "lock_reason", "otp_failure_count"])
    security_event_record(kind=Kind.UNLOCKED, request=request, user=user, detail={"by": by.get_username()})


# --- Session lifetime -------------------------------------------------------------------

LAST_SEEN_WRITE_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionStanding:
    """What the session check found: why the session must end now (None: it may go on),
    and the device it is bound to, read in the same statement (None before it has one)."""

    end_reason: UserSession.EndReason | None
    device: BrowserDevice | None = None


@dataclass(frozen=True)
class _SessionRecord:
    ended_at: datetime | None
    end_reason: str
    user_agent_hash: str
    device: BrowserDevice | None


@functools.cache
def _session_record_statement() -> str:
    """The session record with its device, as one statement built once per process. The
    ORM compiling the same two-table query on every request cost more than running it
    (tests/benchmarks/device_proof.py). Table names come from the models, as in the other
    hand-written statements; column names are Django's defaults."""
    return f"""
        SELECT d.*, s.ended_at AS session_ended_at, s.end_reason AS session_end_reason,
            s.user_agent_hash AS session_user_agent_hash
        FROM {UserSession._meta.db_table} s
        LEFT JOIN {BrowserDevice._meta.db_table} d ON d.id = s.device_id
        WHERE s.id = %s AND s.user_id = %s
    """  # noqa: S608  # only table names are interpolated, from the models; the ids are parameters


def _session_record_read(session_id: int, user_id: int) -> _SessionRecord | None:
    """The user's session record, None when there is no such session of theirs. Read as
    device rows, so the device's fields are converted as the ORM converts them; its pk is
    None when the session has no device yet."""
    row = next(iter(BrowserDevice.objects.raw(_session_record_statement(), [session_id, user_id])), None)
    if row is None:
        return None
    return _SessionRecord(
        ended_at=row.session_ended_at,  # type: ignore[attr-defined]
        end_reason=row.session_end_reason,  # type: ignore[attr-defined]
        user_agent_hash=row.session_user_agent_hash,  # type: ignore[attr-defined]
        device=row if row.pk is not None else None,
    )


def session_lifetime_check(*, session: SessionBase, user_id: int, user_agent: str) -> SessionStanding:
    """Whether an authenticated session must end now, and the device it is bound to.

    Asked on every HTTP request and by long-lived sockets, so the same rules hold for both.
    """
    now = timezone.now().timestamp()
    started = session.get(SESSION_STARTED_KEY)
    last_seen = session.get(SESSION_LAST_SEEN_KEY)
    session_id = session.get(SESSION_ID_KEY)
    if started is None or last_seen is None or session_id is None:
        return SessionStanding(UserSession.EndReason.REVOKED)
    if now - float(started) > settings.SESSION_ABSOLUTE_TIMEOUT.total_seconds():
        return SessionStanding(UserSession.EndReason.ABSOLUTE)
    if now - float(last_seen) > settings.SESSION_IDLE_TIMEOUT.total_seconds():
        return SessionStanding(UserSession.EndReason.IDLE)
    reauthenticate_at = session.get(IDP_REAUTHENTICATE_AT_KEY)
    if reauthenticate_at is not None and now > float(reauthenticate_at):
        return SessionStanding(UserSession.EndReason.IDP_REAUTHENTICATE)
    record = _session_record_read(session_id, user_id)
    if record is None:
        return SessionStanding(UserSession.EndReason.REVOKED)
    if record.ended_at is not None:
        # Ended elsewhere (signed out everywhere, a supervisor, a lock): the person is told which.
        return SessionStanding(UserSession.EndReason(record.end_reason or UserSession.EndReason.REVOKED))
    if record.user_agent_hash != hashlib.sha256(user_agent.encode()).hexdigest():
        return SessionStanding(UserSession.EndReason.DEVICE_CHANGED)
    # Idle time is tracked to the minute: writing on every request would cost a session
    # save and a row update per click.
    if now - float(last_seen) > LAST_SEEN_WRITE_INTERVAL.total_seconds():
        session[SESSION_LAST_SEEN_KEY] = now
        UserSession.objects.filter(pk=session_id).update(last_seen_at=timezone.now())
    return SessionStanding(None, record.device)


def session_touch(*, session: SessionBase) -> None:
    """The person said they are still there ("stay signed in"): restart the idle clock now,
    not at the next once-a-minute write, so the time the page shows is the time they have."""
    session[SESSION_LAST_SEEN_KEY] = timezone.now().timestamp()
    UserSession.objects.filter(pk=session[SESSION_ID_KEY]).update(last_seen_at=timezone.now())
