from __future__ import annotations

from base64 import b32encode
from datetime import timedelta
from urllib.parse import urlencode

import segno
from django.conf import settings
from django.contrib import messages
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services, supervision
from accounts.forms import ActivateForm, EnrollForm, LoginForm, OTPTokenForm, PasswordOutcome
from accounts.models import User, UserSession
from accounts.passkeys.forms import ASSERTION_FIELD
from accounts.passkeys.selectors import has_passkey, passkey_list
from accounts.passkeys.services import PasskeyRefused, passkey_verify
from accounts.selectors import is_verified, session_clock, session_list
from accounts.sso.selectors import session_identity_provider, sign_in_providers
from accounts.sso.services import PendingAction
from audit.services import SESSION_ID_KEY, Kind, Severity, security_event_record

# Set when an enrollment code was redeemed in this session: the one way to a first authenticator.
ENROLLMENT_USER_KEY = "portcullis_enrollment_user"
LOCKED_MESSAGE = "This account is locked after too many failed codes. A supervisor can unlock it."


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return settings.LOGIN_REDIRECT_URL


def _with_next(url_name: str, next_url: str) -> str:
    return f"{reverse(url_name)}?{urlencode({'next': next_url})}"


_UNITS = ((3600, "hour"), (60, "minute"), (1, "second"))


def _spoken(duration: timedelta) -> str:
    """'30 minutes', '12 hours', '1 hour': a configured lifetime as the sign-in page says it."""
    seconds = int(duration.total_seconds())
    count, unit = next((seconds // size, unit) for size, unit in _UNITS if seconds % size == 0)
    return f"{count} {unit}{'' if count == 1 else 's'}"


def ended_message(reason: str) -> str | None:
    """What the sign-in page says about a session the server ended, by its EndReason value.

    Fixed words per reason: the value comes from our own session, and even so it only picks
    a sentence; an unknown value picks none.
    """
    idle = _spoken(settings.SESSION_IDLE_TIMEOUT)
    absolute = _spoken(settings.SESSION_ABSOLUTE_TIMEOUT)
    messages_by_reason: dict[str, str] = {
        UserSession.EndReason.IDLE: f"You were signed out after {idle} without activity.",
        UserSession.EndReason.ABSOLUTE: f"Sessions last at most {absolute}. Sign in again to go on.",
        UserSession.EndReason.REVOKED: "A supervisor ended your session.",
        UserSession.EndReason.LOGOUT_EVERYWHERE: "You signed out everywhere, this browser included.",
        UserSession.EndReason.LOCKED: LOCKED_MESSAGE,
        UserSession.EndReason.DEVICE_CHANGED: (
            "Your browser changed since you signed in, so the session ended. Sign in again; "
            "if you did not switch or update your browser, tell your supervisor."
        ),
        UserSession.EndReason.FACTOR_CHANGED: "Your second factor was changed, which ends every session.",
        UserSession.EndReason.LOGOUT: "You are signed out.",
        UserSession.EndReason.DEVICE_REVOKED: (
            "This device was revoked, which ends its sessions. Signing in here registers it anew."
        ),
        UserSession.EndReason.DEVICE_UNBOUND: "Sessions are now bound to a device key: sign in again here.",
        UserSession.EndReason.IDP_LOGOUT: "You signed out at your company's sign-in service.",
        UserSession.EndReason.IDP_REAUTHENTICATE: "Your company asks you to sign in with it again.",
        UserSession.EndReason.DEPROVISIONED: "Your access was withdrawn by your company's directory.",
    }
    return messages_by_reason.get(reason)


def _current_user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101  # the gate lets only users here
    return request.user


def _passkey_refusal(*, request: HttpRequest, user: User, answer: str) -> str | None:
    """None when the page's passkey answer verified this session, else why not, to show."""
    try:
        passkey_verify(request=request, user=user, credential=answer)
    except PasskeyRefused as refused:
        return str(refused)
    return None


@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if is_verified(request.user):
        return redirect(_safe_next(request))
    ended = ended_message(request.session.pop(services.SESSION_ENDED_REASON_KEY, ""))
    form = LoginForm(request.POST or None, request=request)
    if request.method == "POST":
        if form.is_valid() and form.user is not None:
            user = form.user
            services.session_start(request=request, user=user)
            security_event_record(kind=Kind.LOGIN_SUCCEEDED, request=request, user=user)
            step = "accounts:otp" if services.has_confirmed_totp(user) else "accounts:enroll"
            return HttpResponseRedirect(_with_next(step, _safe_next(request)))
        username = request.POST.get("username", "")
        if form.outcome is PasswordOutcome.THROTTLED:
            security_event_record(
                kind=Kind.LOGIN_THROTTLED,
                request=request,
                severity=Severity.WARNING,
                username_attempted=username,
                detail={"retry_after": form.retry_after},
            )
        elif form.outcome is PasswordOutcome.LOCKED:
            # Only the audit trail learns that the password was right.
            security_event_record(
                kind=Kind.LOGIN_LOCKED, request=request, user=form.user, severity=Severity.WARNING
            )
        elif form.outcome is PasswordOutcome.IDP_ONLY:
            # As with a lock, only the audit trail learns that the password was right.
            security_event_record(
                kind=Kind.LOGIN_FAILED,
                request=request,
                user=form.user,
                severity=Severity.WARNING,
                detail={"refused": "local_sign_in_off"},
            )
        elif username:
            security_event_record(
                kind=Kind.LOGIN_FAILED,
                request=request,
                severity=Severity.WARNING,
                username_attempted=username,
            )
        if form.stuffing_detected:
            security_event_record(
                kind=Kind.CREDENTIAL_STUFFING,
                request=request,
                severity=Severity.CRITICAL,
                username_attempted=username,
                detail={
                    "usernames": settings.LOGIN_STUFFING_USERNAMES,
                    "window_seconds": int(settings.LOGIN_STUFFING_WINDOW.total_seconds()),
                },
            )
    response = render(
        request,
        "accounts/login.html",
        {
            "form": form,
            "next": _safe_next(request),
            "ended_message": ended,
            "identity_providers": sign_in_providers(),
        },
        status=429 if form.retry_after is not None else 400 if form.errors else 200,
    )
    if form.retry_after is not None:
        response["Retry-After"] = str(form.retry_after)
    return response


@never_cache
@require_http_methods(["GET", "POST"])
def otp_view(request: HttpRequest) -> HttpResponse:
    user = _current_user(request)
    if not services.has_confirmed_totp(user):
        return HttpResponseRedirect(_with_next("accounts:enroll", _safe_next(request)))
    # A passkey's answer replaces the code: the form is then left unbound.
    answer = request.POST.get(ASSERTION_FIELD, "")
    form = OTPTokenForm(None if answer else request.POST or None)
    passkey_error = _passkey_refusal(request=request, user=user, answer=answer) if answer else None
    if answer and passkey_error is None:
        return redirect(_safe_next(request))
    if not answer and request.method == "POST" and form.is_valid():
        result = services.otp_verify(request=request, user=user, token=form.cleaned_data["token"])
        if result.outcome is services.OTPOutcome.ACCEPTED:
            return redirect(_safe_next(request))
        if result.outcome is services.OTPOutcome.LOCKED:
            services.session_end(request=request, reason=UserSession.EndReason.LOCKED)
            messages.error(request, LOCKED_MESSAGE)
            return redirect("accounts:login")
        if result.outcome is services.OTPOutcome.THROTTLED:
            wait = "a moment"
            if result.retry_after is not None:
                seconds = max(1, int((result.retry_after - timezone.now()).total_seconds()) + 1)
                wait = f"{seconds} seconds"
            form.add_error("token", f"Too many failed codes. Wait {wait} before trying again.")
        else:
            form.add_error("token", "That code is not valid. Codes work once only.")
    return render(
        request,
        "accounts/otp.html",
        {
            "form": form,
            "next": _safe_next(request),
            "passkey": has_passkey(user),
            "passkey_error": passkey_error,
        },
        status=400 if form.errors or passkey_error else 200,
    )


@never_cache
@require_http_methods(["GET", "POST"])
def enroll_view(request: HttpRequest) -> HttpResponse:
    user = _current_user(request)
    # Replacing an enrolled authenticator is only for a freshly verified session.
    if services.has_confirmed_totp(user):
        if not (is_verified(user) and services.step_up_is_fresh(request)):
            return HttpResponseRedirect(_with_next("accounts:otp", _safe_next(request)))
    # A first authenticator only with the enrollment code of an approved change: a password
    # alone (set, guessed or stolen) must not let anyone bind their own phone to the account.
    elif request.session.get(ENROLLMENT_USER_KEY) != user.pk:
        messages.info(request, "Enter the enrollment code your supervisor gave you to set up sign-in.")
        return HttpResponseRedirect(_with_next("accounts:activate", _safe_next(request)))
    form = EnrollForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = services.totp_enrollment_confirm(
                request=request,
                user=user,
                device_id=form.cleaned_data["device_id"],
                token=form.cleaned_data["token"],
            )
        except services.EnrollmentError as error:
            form.add_error("token", str(error))
        else:
            return render(
                request, "accounts/backup_codes.html", {"codes": codes, "next": _safe_next(request)}
            )
    device = services.totp_enrollment_device(user=user)
    uri = device.config_url
    context = {
        "form": form,
        "device_id": device.pk,
        "qr_svg": segno.make(uri, error="m").svg_inline(scale=5, dark="#111", light="#fff"),
        "manual_key": _group(_base32(device)),
        "next": _safe_next(request),
    }
    return render(request, "accounts/enroll.html", context, status=400 if form.errors else 200)


@never_cache
@require_http_methods(["GET", "POST"])
def activate_view(request: HttpRequest) -> HttpResponse:
    """Redeem an enrollment code: set a password where the change asks for one, then go on
    to enroll an authenticator (new account, factor reset) or to the second factor."""
    initial = {"code": request.GET.get("code", "")}
    if isinstance(request.user, User):
        initial["username"] = request.user.get_username()
    form = ActivateForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            enrollment = supervision.enrollment_code_redeem(
                request=request,
                username=form.cleaned_data["username"],
                code=form.cleaned_data["code"],
                new_password=form.cleaned_data["new_password"] or None,
            )
        except supervision.EnrollmentCodeRefused as refused:
            form.add_error(None, str(refused))
        else:
            user = enrollment.user
            if request.user.pk != user.pk:
                services.session_start(request=request, user=user)
            if services.has_confirmed_totp(user):
                return HttpResponseRedirect(_with_next("accounts:otp", _safe_next(request)))
            request.session[ENROLLMENT_USER_KEY] = user.pk
            return HttpResponseRedirect(_with_next("accounts:enroll", _safe_next(request)))
    return render(
        request,
        "accounts/activate.html",
        {"form": form, "next": _safe_next(request)},
        status=400 if form.errors else 200,
    )


def _base32(device: TOTPDevice) -> str:
    return b32encode(device.bin_key).decode().rstrip("=")


def _group(key: str) -> str:
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    services.session_end(request=request, reason=UserSession.EndReason.LOGOUT)
    if isinstance(user, User):
        security_event_record(kind=Kind.LOGOUT, request=request, user=user)
    messages.info(request, "You are signed out.")
    return redirect("accounts:login")


@never_cache
@require_POST
def session_keepalive_view(request: HttpRequest) -> JsonResponse:
    """ "Stay signed in" on the idle warning: restarts the idle clock and tells the page how
    long the session now has (the absolute limit stays where it was)."""
    services.session_touch(session=request.session)
    clock = session_clock(session=request.session)
    assert clock is not None  # noqa: S101  # the gate lets only live sessions here
    return JsonResponse({"idle_seconds": clock.idle_seconds, "absolute_seconds": clock.absolute_seconds})


@require_POST
def logout_everywhere_view(request: HttpRequest) -> HttpResponse:
    user = _current_user(request)
    count = services.sessions_end_all(user=user, reason=UserSession.EndReason.LOGOUT_EVERYWHERE)
    security_event_record(kind=Kind.LOGOUT_EVERYWHERE, request=request, user=user, detail={"sessions": count})
    services.session_end(request=request, reason=UserSession.EndReason.LOGOUT_EVERYWHERE)
    messages.info(request, f"Signed out of {count} session(s).")
    return redirect("accounts:login")


@never_cache
@require_http_methods(["GET", "POST"])
def security_view(request: HttpRequest) -> HttpResponse:
    """The agent's own security page: sessions, backup codes, authenticator."""
    user = _current_user(request)
    form = OTPTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        action = request.POST.get("action")
        result = services.otp_verify(request=request, user=user, token=form.cleaned_data["token"])
        if result.outcome is services.OTPOutcome.LOCKED:
            services.session_end(request=request, reason=UserSession.EndReason.LOCKED)
            messages.error(request, LOCKED_MESSAGE)
            return redirect("accounts:login")
        if result.outcome is not services.OTPOutcome.ACCEPTED:
            form.add_error("token", "Confirm with a valid, unused code from your authenticator.")
        elif action == "backup_codes":
            codes = services.backup_codes_issue(request=request, user=user)
            return render(
                request, "accounts/backup_codes.html", {"codes": codes, "next": reverse("accounts:security")}
            )
        elif action == "replace_authenticator":
            return redirect("accounts:enroll")
        else:
            form.add_error(None, "Unknown action.")
    context = {
        "form": form,
        "sessions": session_list(user=user, current_id=request.session.get("portcullis_session_id")),
        "passkeys": passkey_list(user=user),
    }
    return render(request, "accounts/security.html", context, status=400 if form.errors else 200)


@require_GET
def health_view(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability for load balancers; reveals nothing else."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


# Form fields of the step-up page itself, not carried into the continued request.
# The interrupted request's device proof too (accounts.devices.middleware.PROOF_FIELD, whose
# module imports this one): it was spent, and was for that request only.
STEP_UP_OWN_FIELDS = frozenset(
    {"csrfmiddlewaretoken", "token", "step_up_next", "step_up_method", ASSERTION_FIELD, "device_proof"}
)


def step_up_fields(request: HttpRequest) -> list[tuple[str, str]]:
    """The interrupted request's own form fields, to send again as they were."""
    return [
        (name, value)
        for name, values in request.POST.lists()
        if name not in STEP_UP_OWN_FIELDS
        for value in values
    ]


def step_up_target(request: HttpRequest) -> tuple[str, str]:
    """Where the step-up form continues (a local path only), and with which method."""
    target = request.POST.get("step_up_next", "")
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(target, allowed_hosts=set()):
        target = settings.LOGIN_REDIRECT_URL
    return target, "POST" if request.POST.get("step_up_method") == "POST" else "GET"


def step_up_page(
    request: HttpRequest,
    *,
    message: str,
    target: str,
    method: str,
    form: OTPTokenForm,
    status: int,
    passkey_error: str | None = None,
) -> HttpResponse:
    """The inline second-factor prompt: the code, and the interrupted request's own fields,
    so that it can be sent again as it was."""
    context = {
        "message": message,
        "next": target,
        "method": method,
        "fields": step_up_fields(request),
        "form": form,
        # A session the company's IdP opened can step up with a fresh sign-in there.
        "identity_provider": session_identity_provider(request.session.get(SESSION_ID_KEY)),
        "passkey": isinstance(request.user, User) and has_passkey(request.user),
        "passkey_error": passkey_error,
    }
    return render(request, "accounts/step_up.html", context, status=status)


@never_cache
@require_POST
def step_up_view(request: HttpRequest) -> HttpResponse:
    """Take the fresh second factor a rule asked for, then continue the request that asked:
    307 sends a form post again with its fields, 303 repeats a page load."""
    user = _current_user(request)
    target, method = step_up_target(request)
    answer = request.POST.get(ASSERTION_FIELD, "")
    form = OTPTokenForm(None if answer else request.POST)
    passkey_error = _passkey_refusal(request=request, user=user, answer=answer) if answer else None
    accepted = bool(answer) and passkey_error is None
    if not answer and form.is_valid():
        result = services.otp_verify(request=request, user=user, token=form.cleaned_data["token"])
        if result.outcome is services.OTPOutcome.LOCKED:
            services.session_end(request=request, reason=UserSession.EndReason.LOCKED)
            messages.error(request, LOCKED_MESSAGE)
            return redirect("accounts:login")
        accepted = result.outcome is services.OTPOutcome.ACCEPTED
        if not accepted:
            form.add_error("token", "That code is not valid. Codes work once only.")
    if accepted and method == "POST" and settings.DEVICE_BINDING != "off":
        # A 307 would re-post this form's proof, which was for /accounts/step-up/: the page
        # posts the fields itself instead, and the device script signs that post.
        action = PendingAction(target=target, method=method, fields=step_up_fields(request))
        return render(request, "accounts/step_up_continue.html", {"action": action})
    if accepted:
        response = HttpResponseRedirect(target)
        response.status_code = 307 if method == "POST" else 303
        return response
    return step_up_page(
        request,
        message="Confirm with a fresh code to continue.",
        target=target,
        method=method,
        form=form,
        status=400,
        passkey_error=passkey_error,
    )
