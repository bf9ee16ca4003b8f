"""The person's own devices, the proof refresh, DBSC, and the waiting-for-approval page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.devices import dbsc, selectors, services
from accounts.devices.proofs import ProofRefused, nonce_issue
from accounts.models import BrowserDevice, User
from accounts.passkeys.forms import ASSERTION_FIELD
from accounts.passkeys.selectors import has_passkey
from accounts.passkeys.services import PasskeyRefused


def _user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):
        raise Http404
    return user


# The proof is the credential here, and a cross-site page cannot make one: it is signed over
# this URL and a server nonce by a key that never leaves the device's browser.
@csrf_exempt
@never_cache
@require_POST
def device_refresh_view(request: HttpRequest) -> JsonResponse:
    """Renew the bound cookie (the gate does, on any proven request) and hand out a nonce."""
    if request.META.get(services.REFRESH_META_KEY) is None:
        return JsonResponse({"detail": "No valid device proof.", "code": "device_proof_required"}, status=401)
    return JsonResponse({"nonce": nonce_issue(), "refresh_seconds": settings.DEVICE_REFRESH_SECONDS})


def _dbsc_refused(refused: ProofRefused) -> JsonResponse:
    # A 4xx other than 403 ends the browser's DBSC session (the draft's "terminate the session").
    return JsonResponse(
        {"detail": "Device-bound session refused.", "code": f"dbsc_{refused.code}"}, status=401
    )


# The browser calls the two DBSC endpoints itself, with no device proof and no CSRF token:
# the JWT signed by the session's DBSC key is the credential (accounts.devices.dbsc).
@csrf_exempt
@never_cache
@require_POST
def dbsc_register_view(request: HttpRequest) -> JsonResponse:
    if not dbsc.dbsc_enabled():
        raise Http404
    try:
        return JsonResponse(dbsc.dbsc_register(request=request))
    except ProofRefused as refused:
        return _dbsc_refused(refused)


@csrf_exempt
@never_cache
@require_POST
def dbsc_refresh_view(request: HttpRequest) -> JsonResponse:
    if not dbsc.dbsc_enabled():
        raise Http404
    try:
        return JsonResponse(dbsc.dbsc_refresh(request=request))
    except dbsc.ChallengeRequired as required:
        response = JsonResponse({"detail": "Sign the challenge.", "code": "dbsc_challenge"}, status=403)
        response[dbsc.CHALLENGE_HEADER] = required.header
        return response
    except ProofRefused as refused:
        return _dbsc_refused(refused)


@never_cache
@require_http_methods(["GET", "POST"])
def device_pending_view(request: HttpRequest) -> HttpResponse:
    """The waiting-for-approval page; where policy allows, the owner's passkey answer
    posted here opens the device instead (services.device_confirm_by_passkey)."""
    user = _user(request)
    device_id = request.session.get(services.DEVICE_ID_KEY)
    device = selectors.own_device(user=user, device_id=device_id) if device_id else None
    if device is None or device.approval != BrowserDevice.Approval.PENDING:
        return redirect(settings.LOGIN_REDIRECT_URL)
    error = None
    if request.method == "POST":
        try:
            services.device_confirm_by_passkey(
                request=request, user=user, device=device, credential=request.POST.get(ASSERTION_FIELD, "")
            )
        except PasskeyRefused as refused:
            error = str(refused)
        else:
            messages.success(request, f"{device.name} is confirmed with your passkey.")
            return redirect(settings.LOGIN_REDIRECT_URL)
    context = {
        "device": device,
        "passkey_offered": services.passkey_confirmation_offered(),
        "has_passkey": has_passkey(user),
        "passkey_error": error,
    }
    return render(request, "accounts/device_pending.html", context, status=400 if error else 200)


@never_cache
@require_GET
def device_list_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    context = {
        "devices": selectors.device_list(user=user),
        "current_id": request.session.get(services.DEVICE_ID_KEY),
    }
    return render(request, "accounts/devices.html", context)


@require_POST
def device_revoke_view(request: HttpRequest, device_id: int) -> HttpResponse:
    user = _user(request)
    device = selectors.own_device(user=user, device_id=device_id)
    if device is None:
        raise Http404
    ended = services.device_revoke(device=device, by=user, request=request)
    messages.info(request, f"{device.name} revoked; {ended} session(s) on it ended.")
    return redirect("accounts:devices")
