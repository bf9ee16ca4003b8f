"""The HTTP gate for devices: every state-changing request of a signed-in session carries
a fresh proof signed by the session's device key, and every request a bound cookie that
only such a proof renews. A stolen session cookie therefore changes nothing at once and
stops reading when its bound cookie runs out (DEVICE_REFRESH_SECONDS).

DEVICE_BINDING: "off" skips all of this; "monitor" records what it would refuse and lets
it through; "enforce" refuses.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from accounts.devices import dbsc, services
from accounts.devices.proofs import DeviceProof, ProofRefused, nonce_issue, proof_verify
from accounts.middleware import API_PREFIX, SELF_AUTHENTICATING_PREFIXES, url_name
from accounts.models import BrowserDevice, UserSession
from accounts.selectors import is_verified
from accounts.services import SESSION_ENDED_REASON_KEY, session_end
from audit.services import SESSION_ID_KEY, Kind, Severity, security_event_record

PROOF_HEADER = "HTTP_DEVICE_PROOF"
PROOF_FIELD = "device_proof"
NONCE_HEADER = "Device-Nonce"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_URL_NAME = "accounts:login"
# Where a password (or an enrollment code) opens a session: the proof must come with it.
SIGN_IN_URL_NAMES = frozenset({LOGIN_URL_NAME, "accounts:activate"})
REFRESH_URL_NAME = "accounts:device_refresh"
PENDING_URL_NAME = "accounts:device_pending"
# Signing out needs no proof: it only ends the session, which is what a thief wants least.
NO_PROOF_URL_NAMES = frozenset({"accounts:logout"})
# The browser calls DBSC's endpoints itself, without a device proof: the JWT signed by the
# session's DBSC key is their credential, which they check (accounts.devices.dbsc).
DBSC_URL_NAMES = frozenset({dbsc.REGISTER_URL_NAME, dbsc.REFRESH_URL_NAME})
# A device waiting for approval reaches only these, once its session has its second factor
# (before that VerifiedAccessMiddleware holds it to the sign-in's second step), and the
# passkey's challenge: its owner's passkey may open it (DEVICE_NEW_DEVICE).
PENDING_URL_NAMES = (
    frozenset({PENDING_URL_NAME, REFRESH_URL_NAME, "accounts:logout", "accounts:passkey_assertion_options"})
    | DBSC_URL_NAMES
)
READ_RECORD_SECONDS = 60


def request_url(request: HttpRequest) -> str:
    """The proof's `htu`: scheme, host and path, without query or fragment (RFC 9449)."""
    return f"{request.scheme}://{request.get_host()}{request.path}"


def _wants_json(request: HttpRequest) -> bool:
    # Script calls (fetch, htmx) carry the proof header or ask for JSON; forms and page
    # loads get a page.
    return (
        request.path_info.startswith(API_PREFIX)
        or PROOF_HEADER in request.META
        or "HTTP_HX_REQUEST" in request.META
        or "application/json" in request.META.get("HTTP_ACCEPT", "")
    )


class DeviceBindingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if (
            settings.DEVICE_BINDING == "off"
            or path.startswith(settings.STATIC_URL)
            or path.startswith(SELF_AUTHENTICATING_PREFIXES)
            # A bearer token is its own credential, judged by the API's permission layer.
            or (path.startswith(API_PREFIX) and "HTTP_AUTHORIZATION" in request.META)
        ):
            return self.get_response(request)
        self._verify_proof(request)
        refusal = self._check(request, enforce=settings.DEVICE_BINDING == "enforce")
        response = refusal or self.get_response(request)
        self._finish(request, response)
        return response

    @staticmethod
    def _verify_proof(request: HttpRequest) -> None:
        token = request.META.get(PROOF_HEADER, "")
        if not token and request.method == "POST":
            token = request.POST.get(PROOF_FIELD, "")
        proof: DeviceProof | None = None
        error = "missing"
        if token:
            try:
                proof = proof_verify(token, method=request.method or "GET", url=request_url(request))
            except ProofRefused as refused:
                error = refused.code
        request.META[services.PROOF_META_KEY] = proof
        request.META[services.PROOF_ERROR_META_KEY] = None if proof else error

    def _check(self, request: HttpRequest, *, enforce: bool) -> HttpResponse | None:
        name = url_name(request.path_info)
        if not request.user.is_authenticated:
            return self._check_sign_in(request, name=name, enforce=enforce)
        session = request.session
        device_id = session.get(services.DEVICE_ID_KEY)
        device = request.META.get(services.SESSION_DEVICE_META_KEY)
        if device_id is None:
            device = None
        elif device is None or device.pk != device_id or device.user_id != request.user.pk:
            device = BrowserDevice.objects.filter(pk=device_id, user_id=request.user.pk).first()
        if device is None and services.late_binding_open(session):
            device = services.device_session_bind_late(request=request, user=request.user)
            if device is None:
                # The landing page loads, and its script proves the key at once.
                if request.method in SAFE_METHODS:
                    return None
                self._record(request, code="proof_missing")
                return self._refuse(request, "proof_missing") if enforce else None
        if device is None or not device.is_active:
            reason = (
                UserSession.EndReason.DEVICE_UNBOUND
                if device is None
                else UserSession.EndReason.DEVICE_REVOKED
            )
            if not enforce:
                self._record(request, code=reason.value)
                return None
            return self._end(request, reason)
        request.META[services.TRUST_META_KEY] = device.trust_level
        problem = self._problem(request, device=device, name=name)
        if problem is not None:
            self._record(request, code=problem, device=device)
            if enforce:
                return self._refuse(request, problem)
        if (
            device.approval == BrowserDevice.Approval.PENDING
            and name not in PENDING_URL_NAMES
            and enforce
            and is_verified(request.user)
        ):
            if request.method in SAFE_METHODS and not _wants_json(request):
                return HttpResponseRedirect(reverse(PENDING_URL_NAME))
            return JsonResponse(
                {"detail": "This device waits for approval.", "code": "device_pending"}, status=403
            )
        services.device_seen(device=device, request=request)
        return None

    @staticmethod
    def _problem(request: HttpRequest, *, device: BrowserDevice, name: str | None) -> str | None:
        if name in DBSC_URL_NAMES:
            return None
        if device.binding == BrowserDevice.Binding.COOKIE:
            secret = request.COOKIES.get(services.device_cookie_name(), "")
            return None if services.device_cookie_hash_matches(secret, device) else "device_cookie"
        proof: DeviceProof | None = request.META[services.PROOF_META_KEY]
        proven = proof is not None and proof.thumbprint == device.key_thumbprint
        if proven:
            request.META[services.REFRESH_META_KEY] = (request.session[SESSION_ID_KEY], device.key_thumbprint)
            return None
        if request.method not in SAFE_METHODS and name not in NO_PROOF_URL_NAMES:
            # A proof made by another key is as good as none.
            return f"proof_{request.META[services.PROOF_ERROR_META_KEY] or 'other_device'}"
        fresh = services.bound_cookie_is_valid(
            request.COOKIES.get(services.bound_cookie_name()),
            session_record_id=request.session[SESSION_ID_KEY],
            thumbprint=device.key_thumbprint,
        )
        return None if fresh or name in NO_PROOF_URL_NAMES else "refresh"

    def _check_sign_in(self, request: HttpRequest, *, name: str | None, enforce: bool) -> HttpResponse | None:
        """A sign-in binds the new session to the device that proves its key with it:
        refused here, before the password is even checked, when that cannot happen."""
        if name not in SIGN_IN_URL_NAMES or request.method != "POST":
            return None
        proof: DeviceProof | None = request.META[services.PROOF_META_KEY]
        code = None
        if proof is not None:
            if BrowserDevice.objects.filter(
                key_thumbprint=proof.thumbprint, revoked_at__isnull=False
            ).exists():
                code = "revoked_key"
        elif (
            request.META[services.PROOF_ERROR_META_KEY] != "missing"
            or settings.DEVICE_WEAK_FALLBACK != "cookie"
        ):
            code = f"sign_in_{request.META[services.PROOF_ERROR_META_KEY]}"
        if code is None:
            return None
        security_event_record(
            kind=Kind.DEVICE_REFUSED,
            request=request,
            severity=Severity.WARNING,
            username_attempted=request.POST.get("username", ""),
            detail={"code": code, "mode": settings.DEVICE_BINDING},
        )
        if not enforce:
            return None
        return render(
            request,
            "accounts/device_refused.html",
            {"code": code, "reset_key": code == "revoked_key"},
            status=403,
        )

    @staticmethod
    def _record(request: HttpRequest, *, code: str, device: BrowserDevice | None = None) -> None:
        if request.method in SAFE_METHODS:
            # Reads are recorded once a minute per session and reason, not per click.
            key = f"device-refused:{request.session.get(SESSION_ID_KEY)}:{code}"
            if not cache.add(key, 1, READ_RECORD_SECONDS):
                return
        security_event_record(
            kind=Kind.DEVICE_PROOF_REFUSED,
            request=request,
            # The device's own tab back from a sleep needs a refresh too (its script renews
            # at once); a refresh from a browser without the key is what stands out.
            severity=Severity.INFO if code == "refresh" else Severity.WARNING,
            detail={
                "code": code,
                "method": request.method,
                "path": request.path_info[:200],
                "device": device.pk if device else None,
                "mode": settings.DEVICE_BINDING,
            },
        )

    @staticmethod
    def _end(request: HttpRequest, reason: UserSession.EndReason) -> HttpResponse:
        # Recorded first, while the request still names the session and its user.
        security_event_record(
            kind=Kind.SESSION_ENDED,
            request=request,
            severity=Severity.WARNING,
            detail={"reason": reason.value},
        )
        session_end(request=request, reason=reason)
        request.session[SESSION_ENDED_REASON_KEY] = reason.value
        if _wants_json(request):
            return JsonResponse({"detail": "Sign in again.", "code": "device_required"}, status=401)
        return HttpResponseRedirect(reverse(LOGIN_URL_NAME))

    @staticmethod
    def _refuse(request: HttpRequest, problem: str) -> HttpResponse:
        code = "device_refresh_required" if problem == "refresh" else "device_proof_required"
        if problem == "proof_nonce":
            code = "device_nonce"
        if _wants_json(request):
            return JsonResponse({"detail": "This device must prove its key.", "code": code}, status=401)
        if request.method in SAFE_METHODS:
            # The device's own script signs a refresh and loads the page again; a browser
            # without the key stays here.
            return render(
                request, "accounts/device_confirm.html", {"target": request.get_full_path()}, status=401
            )
        return render(
            request, "accounts/device_refused.html", {"code": problem, "reset_key": False}, status=403
        )

    @staticmethod
    def _finish(request: HttpRequest, response: HttpResponse) -> None:
        refresh = request.META.get(services.REFRESH_META_KEY)
        if refresh is not None and request.user.is_authenticated:
            record_id, thumbprint = refresh
            response.set_cookie(
                services.bound_cookie_name(),
                services.bound_cookie_value(session_record_id=record_id, thumbprint=thumbprint),
                max_age=settings.DEVICE_REFRESH_SECONDS,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        dbsc.dbsc_registration_offer(request=request, response=response)
        secret = request.META.get(services.NEW_DEVICE_COOKIE_META_KEY)
        if secret is not None:
            response.set_cookie(
                services.device_cookie_name(),
                secret,
                max_age=365 * 24 * 3600,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        if PROOF_HEADER in request.META or response.status_code == 401:
            # Scripts sign their next proof with this (and retry once with it after "device_nonce").
            response[NONCE_HEADER] = nonce_issue()
