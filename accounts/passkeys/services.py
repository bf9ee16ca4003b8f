"""Writes for passkeys: the two WebAuthn ceremonies (register, assert) and removal.

Each ceremony's challenge lives in the session and is taken out by the first answer, right
or wrong, so a captured answer cannot be replayed. The relying party is the host the
request came to (already vetted by ALLOWED_HOSTS): a passkey made for another origin, or an
answer signed for one (a phishing page), does not verify here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction
from django.http import HttpRequest
from django.http.request import split_domain_port
from django.utils import timezone
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_authentication_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from accounts.devices.services import DEVICE_ID_KEY
from accounts.models import BrowserDevice, User
from accounts.passkeys.models import Passkey
from accounts.services import PasskeyFlags, session_mark_verified, step_up_is_fresh
from audit.services import Kind, Severity, security_event_record
from inbox.policy import StepUpRequired

REGISTRATION_CHALLENGE_KEY = "portcullis_passkey_registration"
ASSERTION_CHALLENGE_KEY = "portcullis_passkey_assertion"
# How long a challenge may wait for its answer; the browser gives up after the same time.
CEREMONY_TIMEOUT_SECONDS = 120
RP_NAME = "Portcullis"
FRESH_FACTOR_MESSAGE = "Changing passkeys needs a fresh second factor."


class PasskeyRefused(Exception):
    """The passkey's answer did not verify; the message is fit to show, the reason is for
    the audit trail."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


EXPIRED = "This passkey request expired or was already used. Try again."
UNVERIFIED = "The passkey could not be verified. Try again."


def _relying_party(request: HttpRequest) -> tuple[str, str]:
    """(rp id, origin) of this request: the host without its port, and scheme://host."""
    host = request.get_host()
    domain, _port = split_domain_port(host)
    return domain, f"{request.scheme}://{host}"


def _challenge_put(request: HttpRequest, key: str, challenge: bytes) -> None:
    request.session[key] = {"challenge": bytes_to_base64url(challenge), "at": timezone.now().timestamp()}


def _challenge_take(request: HttpRequest, key: str) -> bytes:
    pending = request.session.pop(key, None)
    if not isinstance(pending, dict) or (
        timezone.now().timestamp() - float(pending.get("at", 0)) > CEREMONY_TIMEOUT_SECONDS
    ):
        raise PasskeyRefused(EXPIRED, reason="no pending challenge")
    return base64url_to_bytes(str(pending.get("challenge", "")))


@contextmanager
def _refusals_recorded(*, request: HttpRequest, user: User, step: str) -> Iterator[None]:
    """Record a refusal once the ceremony's transaction has rolled back, so the record stays."""
    try:
        yield
    except PasskeyRefused as refused:
        security_event_record(
            kind=Kind.OTP_FAILED,
            request=request,
            user=user,
            severity=Severity.WARNING,
            detail={"factor": "passkey", "step": step, "reason": refused.reason[:200]},
        )
        raise


def registration_options(*, request: HttpRequest, user: User) -> str:
    """The browser's `navigator.credentials.create()` options, as JSON."""
    rp_id, _ = _relying_party(request)
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=user.get_username(),
        user_id=f"portcullis-user-{user.pk}".encode(),
        user_display_name=user.get_full_name() or user.get_username(),
        timeout=CEREMONY_TIMEOUT_SECONDS * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        # The same authenticator twice would be one factor counted as two.
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(credential_id))
            for credential_id in Passkey.objects.filter(user=user).values_list("credential_id", flat=True)
        ],
    )
    _challenge_put(request, REGISTRATION_CHALLENGE_KEY, options.challenge)
    return options_to_json(options)


def passkey_register(*, request: HttpRequest, user: User, name: str, credential: str) -> Passkey:
    """Verify the browser's new credential against the session's challenge and keep it."""
    rp_id, origin = _relying_party(request)
    with _refusals_recorded(request=request, user=user, step="register"), transaction.atomic():
        challenge = _challenge_take(request, REGISTRATION_CHALLENGE_KEY)
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                require_user_verification=True,
            )
        except WebAuthnException as error:
            raise PasskeyRefused(UNVERIFIED, reason=str(error)) from error
        credential_id = bytes_to_base64url(verified.credential_id)
        if Passkey.objects.filter(credential_id=credential_id).exists():
            raise PasskeyRefused(
                "This passkey is already registered.", reason="credential already registered"
            )
        passkey = Passkey.objects.create(
            user=user,
            name=name,
            confirmed=True,
            credential_id=credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            aaguid=verified.aaguid,
            device_type=verified.credential_device_type.value,
            backed_up=verified.credential_backed_up,
        )
        security_event_record(
            kind=Kind.ENROLLED,
            request=request,
            user=user,
            detail={
                "factor": "passkey",
                "passkey": passkey.pk,
                "device_type": passkey.device_type,
                "aaguid": passkey.aaguid,
            },
        )
    return passkey


def assertion_options(*, request: HttpRequest, user: User) -> str | None:
    """The browser's `navigator.credentials.get()` options as JSON; None without passkeys."""
    credential_ids = list(
        Passkey.objects.filter(user=user, confirmed=True).values_list("credential_id", flat=True)
    )
    if not credential_ids:
        return None
    rp_id, _ = _relying_party(request)
    options = generate_authentication_options(
        rp_id=rp_id,
        timeout=CEREMONY_TIMEOUT_SECONDS * 1000,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in credential_ids],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    _challenge_put(request, ASSERTION_CHALLENGE_KEY, options.challenge)
    return options_to_json(options)


def passkey_verify(*, request: HttpRequest, user: User, credential: str) -> Passkey:
    """Verify an assertion of one of the user's passkeys: the session is then verified by
    it (second step of sign-in, or a fresh factor for a step-up)."""
    rp_id, origin = _relying_party(request)
    with _refusals_recorded(request=request, user=user, step="assert"), transaction.atomic():
        challenge = _challenge_take(request, ASSERTION_CHALLENGE_KEY)
        # Row locks serialise two answers racing for one passkey's sign count.
        locked_user = User.objects.select_for_update().get(pk=user.pk)
        try:
            parsed = parse_authentication_credential_json(credential)
        except (WebAuthnException, ValueError) as error:
            raise PasskeyRefused("That passkey answer is not valid.", reason=str(error)) from error
        passkey = (
            Passkey.objects.select_for_update()
            .filter(user=user, confirmed=True, credential_id=parsed.id)
            .first()
        )
        if locked_user.is_locked or passkey is None:
            raise PasskeyRefused(
                "That passkey is not registered for this account.",
                reason="locked" if locked_user.is_locked else "unknown credential",
            )
        try:
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=bytes(passkey.public_key),
                credential_current_sign_count=passkey.sign_count,
                require_user_verification=True,
            )
        except WebAuthnException as error:
            raise PasskeyRefused(UNVERIFIED, reason=str(error)) from error
        passkey.sign_count = verified.new_sign_count
        passkey.backed_up = verified.credential_backed_up
        passkey.last_used_at = timezone.now()
        passkey.save(update_fields=["sign_count", "backed_up", "last_used_at"])
        locked_user.otp_failure_count = 0
        locked_user.save(update_fields=["otp_failure_count"])
        flags = PasskeyFlags(
            device=passkey.persistent_id,
            # This assertion's backup-eligibility flag as well as the registration's: a
            # credential that says it could be synced is counted as synced.
            device_bound=passkey.is_device_bound
            and verified.credential_device_type == CredentialDeviceType.SINGLE_DEVICE,
            user_verified=verified.user_verified,
            aaguid=passkey.aaguid,
        )
        session_mark_verified(request, passkey, passkey_flags=flags)
        # The session's device remembers the passkey for its posture (shown, see BrowserDevice).
        device_id = request.session.get(DEVICE_ID_KEY)
        if device_id is not None:
            BrowserDevice.objects.filter(pk=device_id, user=user).update(
                last_passkey=passkey, last_passkey_at=passkey.last_used_at
            )
        security_event_record(
            kind=Kind.OTP_SUCCEEDED,
            request=request,
            user=user,
            detail={"factor": "passkey", "passkey": passkey.pk},
        )
    return passkey


def factor_change_check(request: HttpRequest) -> None:
    """Factor changes are the step-up's own case: the gate (StepUpMiddleware) asks for the
    factor inline and then posts the interrupted request again."""
    if not step_up_is_fresh(request):
        raise StepUpRequired(FRESH_FACTOR_MESSAGE)


def passkey_remove(*, request: HttpRequest, passkey: Passkey, by: User) -> None:
    """Remove a passkey: its owner from the security page, or a supervisor who manages the
    owner (the caller has checked that). Either way it needs a fresh factor of whoever
    removes it, so a stolen session removes nothing. Sessions it verified stop being
    verified at their next request (django-otp no longer finds the device)."""
    factor_change_check(request)
    with transaction.atomic():
        passkey.delete()
        security_event_record(
            kind=Kind.FACTOR_RESET,
            request=request,
            user=passkey.user,
            severity=Severity.WARNING,
            detail={"by": by.get_username(), "factor": "passkey", "name": passkey.name},
        )
