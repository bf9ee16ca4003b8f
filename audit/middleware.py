from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.urls import Resolver404, resolve, reverse

from accounts.forms import OTPTokenForm
from accounts.services import OTP_VERIFIED_AT_KEY
from accounts.views import step_up_page
from audit.alerts.blocks import BLOCKS_KEY, block_holding
from audit.alerts.responses import step_up_key
from audit.services import access_events_batched, client_ip
from inbox.policy import StepUpRequired

IDP_STEP_UP_URL_NAMES = frozenset({"accounts:sso_step_up", "accounts:sso_callback"})
ALERT_STEP_UP_MESSAGE = (
    "Something unusual was noticed on your account: confirm it is you with a code from your authenticator."
)


class AlertResponseMiddleware:
    """Applies the responses alerts left for the next request: a blocked address is refused
    outright, and a user asked to step up gives a fresh second factor before going on (a
    code given after the alert counts, in this session or any). One cache round trip (and a
    database read when the blocks' cache entry is missing)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        address = client_ip(request)
        user_id = request.user.pk if request.user.is_authenticated else None
        keys = [BLOCKS_KEY]
        if user_id is not None:
            keys.append(step_up_key(user_id))
        found = cache.get_many(keys)
        if address and block_holding(address, found.get(BLOCKS_KEY)) is not None:
            # Not recorded per request: the block, its alert and its evidence are.
            if request.path_info.startswith("/api/"):
                return JsonResponse(
                    {"detail": "This address is blocked.", "code": "address_blocked"}, status=403
                )
            return HttpResponseForbidden(
                "Requests from this address are blocked. Contact your administrator."
            )
        step_up_since = found.get(step_up_key(user_id)) if user_id is not None else None
        if step_up_since is not None and self._must_step_up(request, float(step_up_since)):
            if request.path_info.startswith("/api/"):
                return JsonResponse(StepUpRequired(ALERT_STEP_UP_MESSAGE).body(), status=403)
            return step_up_page(
                request,
                message=ALERT_STEP_UP_MESSAGE,
                target=request.get_full_path(),
                method="POST" if request.method == "POST" else "GET",
                form=OTPTokenForm(),
                status=403,
            )
        return self.get_response(request)

    @staticmethod
    def _must_step_up(request: HttpRequest, since: float) -> bool:
        session = getattr(request, "session", None)
        if session is None or request.path_info.startswith(settings.STATIC_URL):
            return False
        # The step-up form itself and signing out must stay reachable.
        if request.path_info in (reverse("accounts:step_up"), reverse("accounts:logout")):
            return False
        # A step-up through the company's IdP: out to it, and back with its answer.
        try:
            if resolve(request.path_info).view_name in IDP_STEP_UP_URL_NAMES:
                return False
        except Resolver404:
            pass
        verified_at = session.get(OTP_VERIFIED_AT_KEY)
        return verified_at is None or float(verified_at) <= since


class AccessEventMiddleware:
    """Writes the request's access decisions in one batch after the response is built."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with access_events_batched():
            return self.get_response(request)
