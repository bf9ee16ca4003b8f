"""The HTTP gate: no URL answers a session that is not OTP-verified, except the few
that get a person to verification. Deny by default, so a new view cannot forget it."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django_htmx.http import reswap, retarget

from accounts.devices.services import SESSION_DEVICE_META_KEY
from accounts.forms import OTPTokenForm
from accounts.models import UserSession
from accounts.selectors import is_verified
from accounts.services import (
    SESSION_ENDED_REASON_KEY,
    has_confirmed_totp,
    session_end,
    session_lifetime_check,
)
from accounts.views import step_up_page
from audit.services import Kind, Severity, security_event_record
from inbox.policy import StepUpRequired

# URL names reachable before verification. Login and health also without a session.
ANONYMOUS_URL_NAMES = frozenset(
    {
        "accounts:login",
        "accounts:activate",
        "health",
        # Single sign-on: out to the IdP, back with its code, and its signed logout token.
        "accounts:sso_start",
        "accounts:sso_callback",
        "accounts:sso_backchannel_logout",
    }
)
# The device proof refresh and DBSC's too: the session is bound to its device at the
# password step; and the passkey's challenge, which the second step may answer instead of a code.
PRE_VERIFICATION_URL_NAMES = frozenset(
    {
        "accounts:otp",
        "accounts:enroll",
        "accounts:logout",
        "accounts:device_refresh",
        "accounts:dbsc_register",
        "accounts:dbsc_refresh",
        "accounts:passkey_assertion_options",
    }
)
# Paths that prove their caller by other means than a session (signed tokens,
# signatures); each view behind them checks that proof itself.
SELF_AUTHENTICATING_PREFIXES: tuple[str, ...] = ("/hooks/", "/livechat/", "/api/scim/", "/metrics")
API_PREFIX = "/api/"
# Reasons this middleware decides, so it records them; the others were recorded by whoever
# ended the session (a supervisor, "sign out everywhere", a lock).
ENDED_BY_THIS_CHECK = frozenset(
    {
        UserSession.EndReason.IDLE,
        UserSession.EndReason.ABSOLUTE,
        UserSession.EndReason.DEVICE_CHANGED,
        UserSession.EndReason.IDP_REAUTHENTICATE,
    }
)


# Paths are the client's: only short ones are remembered, so a spray of long made-up paths
# can cost a lookup each but no more than 4,096 short strings of memory.
URL_NAME_REMEMBERED_LENGTH = 200


def url_name(path_info: str) -> str | None:
    """The name of the URL a path resolves to, for the gates that ask on every request
    (remembered: the URLconf does not change while the process runs)."""
    if len(path_info) > URL_NAME_REMEMBERED_LENGTH:
        return _resolved_name(path_info)
    return _remembered_name(path_info)


def _resolved_name(path_info: str) -> str | None:
    try:
        return resolve(path_info).view_name
    except Resolver404:
        return None


_remembered_name = lru_cache(maxsize=4096)(_resolved_name)


class SessionLifetimeMiddleware:
    """Ends sessions that idled or lived too long, moved browser, or were revoked."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            standing = session_lifetime_check(
                session=request.session,
                user_id=request.user.pk,
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
            reason = standing.end_reason
            if reason is None:
                request.META[SESSION_DEVICE_META_KEY] = standing.device
            else:
                user = request.user
                session_end(request=request, reason=reason)
                # Kept in the fresh anonymous session for the sign-in page, which says why
                # in words of its own: a code, never text from the request.
                request.session[SESSION_ENDED_REASON_KEY] = reason.value
                if reason in ENDED_BY_THIS_CHECK:
                    security_event_record(
                        kind=Kind.SESSION_ENDED,
                        request=request,
                        user=user,
                        severity=Severity.WARNING
                        if reason == UserSession.EndReason.DEVICE_CHANGED
                        else Severity.INFO,
                        detail={"reason": reason.value},
                    )
        return self.get_response(request)


class VerifiedAccessMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(settings.STATIC_URL) or path.startswith(SELF_AUTHENTICATING_PREFIXES):
            return self.get_response(request)
        # API clients with a bearer token are judged by the API's own permission layer,
        # which applies the same rule (accounts.api.VerifiedAccess).
        if path.startswith(API_PREFIX) and "HTTP_AUTHORIZATION" in request.META:
            return self.get_response(request)

        user = request.user
        if is_verified(user):
            return self.get_response(request)

        name = url_name(request.path_info)
        if name in ANONYMOUS_URL_NAMES:
            return self.get_response(request)
        if user.is_authenticated and name in PRE_VERIFICATION_URL_NAMES:
            return self.get_response(request)
        return self._refuse(request)

    @staticmethod
    def _refuse(request: HttpRequest) -> HttpResponse:
        user = request.user
        if request.path_info.startswith(API_PREFIX):
            if not user.is_authenticated:
                return JsonResponse({"detail": "Authentication required."}, status=401)
            return JsonResponse({"detail": "Second-factor verification required."}, status=403)
        if not user.is_authenticated:
            target = reverse("accounts:login")
        elif has_confirmed_totp(user):
            target = reverse("accounts:otp")
        else:
            target = reverse("accounts:enroll")
        if request.method == "GET":
            target += "?" + urlencode({"next": request.get_full_path()})
        return HttpResponseRedirect(target)


class StepUpMiddleware:
    """A rule asked for a fresh second factor (policy.StepUpRequired): the API answers 403
    with a machine-readable code; a page asks for the code inline and then continues the
    very request — a form post is posted again, with the same fields, once the code is in."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, StepUpRequired):
            return None
        if request.path_info.startswith(API_PREFIX):
            return JsonResponse(exception.body(), status=403)
        page = step_up_page(
            request,
            message=str(exception),
            target=request.get_full_path(),
            method="POST" if request.method == "POST" else "GET",
            form=OTPTokenForm(),
            status=403,
        )
        if getattr(request, "htmx", False):
            # An in-place workspace action: the question takes the whole page (not one
            # pane), and its form is a plain post that continues the action after the code.
            retarget(page, "body")
            reswap(page, "innerHTML")
        return page
