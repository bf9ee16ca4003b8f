"""Writes for devices: binding a session at sign-in, approval (by a supervisor, or by the
owner's passkey), revocation."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

import ua_parser
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.devices.proofs import DeviceProof
from accounts.live import sockets_recheck
from accounts.models import BrowserDevice, User, UserSession
from audit.services import SESSION_ID_KEY, Kind, Severity, client_ip, security_event_record

# The bound device of a session (BrowserDevice pk), in the session's data.
DEVICE_ID_KEY = "portcullis_device_id"
# What the middleware verified on this request (a DeviceProof or None), in request.META:
# typed, per request, and never from the client (META keys from headers start HTTP_).
PROOF_META_KEY = "portcullis.device_proof"
PROOF_ERROR_META_KEY = "portcullis.device_proof_error"
TRUST_META_KEY = "portcullis.device_trust"
# The session's device as the session check read it (accounts.services.session_lifetime_check).
SESSION_DEVICE_META_KEY = "portcullis.session_device"
# Set by a write that wants the response to carry a fresh bound cookie / a new device cookie.
REFRESH_META_KEY = "portcullis.device_refresh"
NEW_DEVICE_COOKIE_META_KEY = "portcullis.device_cookie"
# Set when a session has just bound to a device key: the response offers DBSC registration.
DBSC_OFFER_META_KEY = "portcullis.dbsc_offer"
BOUND_COOKIE_SALT = "portcullis.device-bound"
# Hints Chromium sends unasked; kept as the browser said them (quoted lists), shown to people.
CLIENT_HINT_HEADERS = {
    "sec-ch-ua": "HTTP_SEC_CH_UA",
    "sec-ch-ua-mobile": "HTTP_SEC_CH_UA_MOBILE",
    "sec-ch-ua-platform": "HTTP_SEC_CH_UA_PLATFORM",
}
LAST_SEEN_WRITE_INTERVAL = timedelta(seconds=60)
# A sign-in that arrives by redirect (single sign-on's callback) carries no proof: its
# session binds to the first key that proves itself this soon, from the page it lands on.
LATE_BIND_SECONDS = 30
BIND_BY_KEY = "portcullis_device_bind_by"


def bound_cookie_name() -> str:
    # `__Host-` needs Secure: the browser then refuses it from a sibling subdomain.
    return "__Host-device-bound" if settings.SESSION_COOKIE_SECURE else "portcullis_device_bound"


def device_cookie_name() -> str:
    return "__Host-device" if settings.SESSION_COOKIE_SECURE else "portcullis_device"


def bound_cookie_value(*, session_record_id: int, thumbprint: str) -> str:
    return signing.TimestampSigner(salt=BOUND_COOKIE_SALT).sign(f"{session_record_id}:{thumbprint}")


def bound_cookie_is_valid(value: str | None, *, session_record_id: int, thumbprint: str) -> bool:
    """The short-lived cookie only a signature of the device key renews (the idea of DBSC)."""
    if not value:
        return False
    try:
        content = signing.TimestampSigner(salt=BOUND_COOKIE_SALT).unsign(
            value, max_age=settings.DEVICE_REFRESH_SECONDS
        )
    except signing.BadSignature:
        return False
    return secrets.compare_digest(content, f"{session_record_id}:{thumbprint}")


def _cookie_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def device_cookie_hash_matches(secret: str, device: BrowserDevice) -> bool:
    """Whether a device cookie's value is the weak device's (HTTP requests and sockets)."""
    return bool(secret) and secrets.compare_digest(_cookie_hash(secret), device.key_thumbprint)


def _describe(request: HttpRequest) -> dict[str, object]:
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:300].replace("\x00", "")
    parsed = ua_parser.parse(user_agent)
    browser = parsed.user_agent
    system = parsed.os
    family = browser.family if browser else "Unknown browser"
    os_family = system.family if system else "unknown system"
    return {
        "user_agent": user_agent,
        "browser_family": family[:50],
        "browser_version": ".".join(p for p in (browser.major, browser.minor) if p)[:30] if browser else "",
        "os_family": os_family[:50],
        "client_hints": {
            name: request.META[key][:200] for name, key in CLIENT_HINT_HEADERS.items() if key in request.META
        },
        "last_ip": client_ip(request),
        "name": f"{family} on {os_family}"[:100],
    }


def _register(
    *, request: HttpRequest, user: User, binding: str, thumbprint: str, jwk: dict[str, str] | None
) -> BrowserDevice:
    described = _describe(request)
    device = BrowserDevice.objects.filter(
        user=user, key_thumbprint=thumbprint, revoked_at__isnull=True
    ).first()
    if device is not None:
        for field, value in described.items():
            if field != "name":
                setattr(device, field, value)
        device.last_seen_at = timezone.now()
        device.save()
        return device
    approval = (
        BrowserDevice.Approval.UNREVIEWED
        if settings.DEVICE_NEW_DEVICE == "open"
        else BrowserDevice.Approval.PENDING
    )
    device = BrowserDevice.objects.create(
        user=user, binding=binding, key_thumbprint=thumbprint, public_key=jwk, approval=approval, **described
    )
    weak = binding == BrowserDevice.Binding.COOKIE
    security_event_record(
        kind=Kind.DEVICE_REGISTERED,
        request=request,
        user=user,
        severity=Severity.WARNING if weak or approval == BrowserDevice.Approval.PENDING else Severity.INFO,
        detail={"device": device.pk, "name": device.name, "binding": binding, "approval": approval},
    )
    return device


def device_session_bind(*, request: HttpRequest, user: User, record: UserSession) -> BrowserDevice | None:
    """Bind a session that just signed in to the device that proved its key on this request
    (or, where policy allows, to a weaker device cookie). None: the session stays unbound,
    which only a mode short of enforce lets go on (the middleware refused it otherwise)."""
    if settings.DEVICE_BINDING == "off":
        return None
    proof: DeviceProof | None = request.META.get(PROOF_META_KEY)
    if proof is not None:
        if BrowserDevice.objects.filter(key_thumbprint=proof.thumbprint, revoked_at__isnull=False).exists():
            return None
        device = _register(
            request=request,
            user=user,
            binding=BrowserDevice.Binding.KEY,
            thumbprint=proof.thumbprint,
            jwk=proof.jwk,
        )
        request.META[REFRESH_META_KEY] = (record.pk, device.key_thumbprint)
        request.META[DBSC_OFFER_META_KEY] = record.pk
    elif settings.DEVICE_WEAK_FALLBACK == "cookie":
        secret = request.COOKIES.get(device_cookie_name(), "")
        revoked = BrowserDevice.objects.filter(key_thumbprint=_cookie_hash(secret), revoked_at__isnull=False)
        if not secret or len(secret) > 100 or revoked.exists():
            secret = secrets.token_urlsafe(32)
            request.META[NEW_DEVICE_COOKIE_META_KEY] = secret
        device = _register(
            request=request,
            user=user,
            binding=BrowserDevice.Binding.COOKIE,
            thumbprint=_cookie_hash(secret),
            jwk=None,
        )
    else:
        if request.method == "GET":
            request.session[BIND_BY_KEY] = time.time() + LATE_BIND_SECONDS
        return None
    record.device = device
    record.save(update_fields=["device"])
    request.session[DEVICE_ID_KEY] = device.pk
    return device


def late_binding_open(session: SessionBase) -> bool:
    deadline = session.get(BIND_BY_KEY)
    return deadline is not None and time.time() <= float(deadline)


def device_session_bind_late(*, request: HttpRequest, user: User) -> BrowserDevice | None:
    """Bind a session that signed in by redirect to the key proven on this request."""
    if request.META.get(PROOF_META_KEY) is None or not late_binding_open(request.session):
        return None
    del request.session[BIND_BY_KEY]
    record = UserSession.objects.get(pk=request.session[SESSION_ID_KEY], user=user)
    return device_session_bind(request=request, user=user, record=record)


def device_seen(*, device: BrowserDevice, request: HttpRequest) -> None:
    """Last use, to the minute (a write per click would cost a row update per request)."""
    if timezone.now() - device.last_seen_at > LAST_SEEN_WRITE_INTERVAL:
        BrowserDevice.objects.filter(pk=device.pk).update(
            last_seen_at=timezone.now(), last_ip=client_ip(request)
        )


def device_revoke(*, device: BrowserDevice, by: User, request: HttpRequest | None = None) -> int:
    """Revoke a device: its key is never accepted again, its sessions end and their open
    sockets close now (the same recheck a supervisor's session revocation sends)."""
    with transaction.atomic():
        updated = BrowserDevice.objects.filter(pk=device.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if not updated:
            return 0
        ended = UserSession.objects.filter(device=device, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=UserSession.EndReason.DEVICE_REVOKED
        )
        sockets_recheck(user_ids=[device.user_id])
        security_event_record(
            kind=Kind.DEVICE_REVOKED,
            request=request,
            user=device.user,
            severity=Severity.WARNING,
            detail={"device": device.pk, "name": device.name, "by": by.get_username(), "sessions": ended},
        )
    return ended


def _device_open(
    *,
    device: BrowserDevice,
    waiting: QuerySet[BrowserDevice],
    approval: str,
    by: User,
    request: HttpRequest | None,
    detail: dict[str, Any],
) -> bool:
    """Move the device to `approval` if it is still among `waiting` (one conditional
    update, so a revocation or another approval in between wins), let its open sockets
    re-run their checks with the new trust level, record it. False: it no longer waited."""
    with transaction.atomic():
        updated = waiting.filter(pk=device.pk, revoked_at__isnull=True).update(
            approval=approval, approved_by=by, approved_at=timezone.now()
        )
        if not updated:
            return False
        sockets_recheck(user_ids=[device.user_id])
        security_event_record(
            kind=Kind.DEVICE_APPROVED,
            request=request,
            user=device.user,
            detail={"device": device.pk, "name": device.name, **detail},
        )
    return True


def device_approve(*, device: BrowserDevice, by: User, request: HttpRequest | None = None) -> bool:
    """A supervisor vouches for the device: its trust rises to high, a waiting one opens."""
    return _device_open(
        device=device,
        waiting=BrowserDevice.objects.exclude(approval=BrowserDevice.Approval.APPROVED),
        approval=BrowserDevice.Approval.APPROVED,
        by=by,
        request=request,
        detail={"by": by.get_username()},
    )


def passkey_confirmation_offered() -> bool:
    """Whether a device waiting for approval may be opened by its owner's passkey too."""
    return settings.DEVICE_NEW_DEVICE == "passkey_or_approval"


def _request_proves(request: HttpRequest, device: BrowserDevice) -> bool:
    """This very request came from the device: signed by its key (or, for a cookie device,
    carrying its cookie). The gate checks the same under enforce; checked here again so
    that monitor mode, which lets a thief's write through, lets no thief open a device."""
    if device.binding == BrowserDevice.Binding.COOKIE:
        return device_cookie_hash_matches(request.COOKIES.get(device_cookie_name(), ""), device)
    proof: DeviceProof | None = request.META.get(PROOF_META_KEY)
    return proof is not None and proof.thumbprint == device.key_thumbprint


def device_confirm_by_passkey(
    *, request: HttpRequest, user: User, device: BrowserDevice, credential: str
) -> bool:
    """The owner opens their own device waiting for approval with a passkey assertion made
    on it (DEVICE_NEW_DEVICE "passkey_or_approval"). The device becomes CONFIRMED, trust
    medium: the passkey proves the person, not the browser, so only a supervisor's approval
    makes it high. False: it was no longer waiting (approved or revoked meanwhile).

    PermissionDenied: the policy does not offer this, or the request is not the device's
    own. PasskeyRefused: no passkey answer (a code does not do), or one that did not
    verify (recorded by the ceremony), or a synced one where policy wants a bound one."""
    # passkeys.services imports this module (the session's device id).
    from accounts.passkeys.services import PasskeyRefused, passkey_verify

    if not passkey_confirmation_offered():
        raise PermissionDenied("Only a supervisor can approve this device.")
    if device.user_id != user.pk or not _request_proves(request, device):
        raise PermissionDenied("A device can be confirmed only from itself.")
    if not credential:
        raise PasskeyRefused(
            "Confirm this device with a passkey; a code does not.", reason="no passkey answer"
        )
    # The ceremony's own checks: this session's single-use challenge, this origin, user
    # verification, one of this user's passkeys, the sign count. Its refusals are recorded.
    passkey = passkey_verify(request=request, user=user, credential=credential)
    # Registration's and this assertion's backup flags: a credential that could sync does not.
    device_bound = passkey.is_device_bound
    if settings.DEVICE_NEW_DEVICE_PASSKEY_BOUND and not device_bound:
        security_event_record(
            kind=Kind.OTP_FAILED,
            request=request,
            user=user,
            severity=Severity.WARNING,
            detail={
                "factor": "passkey",
                "step": "confirm_device",
                "reason": "synced passkey",
                "device": device.pk,
            },
        )
        raise PasskeyRefused(
            "This device needs a passkey bound to one device (a security key), not a synced one.",
            reason="synced passkey",
        )
    return _device_open(
        device=device,
        waiting=BrowserDevice.objects.filter(user=user, approval=BrowserDevice.Approval.PENDING),
        approval=BrowserDevice.Approval.CONFIRMED,
        by=user,
        request=request,
        detail={"by": "passkey", "passkey": passkey.pk, "device_bound": device_bound},
    )


def device_posture_record(
    *, device: BrowserDevice, posture: dict[str, Any], expires_at: datetime, request: HttpRequest
) -> BrowserDevice:
    """Keep what the device's management attested (verified by accounts.devices.attestation)."""
    device.posture = posture
    device.posture_expires_at = expires_at
    device.save(update_fields=["posture", "posture_expires_at"])
    # Open sockets re-run their checks with the new trust level.
    sockets_recheck(user_ids=[device.user_id])
    security_event_record(
        kind=Kind.DEVICE_ATTESTED,
        request=request,
        user=device.user,
        severity=Severity.INFO if device.posture_compliant else Severity.WARNING,
        detail={"device": device.pk, "compliant": device.posture_compliant, "trust": device.trust_level},
    )
    return device
