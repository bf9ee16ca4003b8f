from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django_otp.admin import OTPAdminSite

from accounts.selectors import is_verified
from accounts.supervision import supervision_overview
from accounts.views import logout_view
from inbox.policy import AccessContext


class PortcullisAdminSite(OTPAdminSite):
    """Staff-only, OTP-verified admin. Sign-in goes through the one login flow."""

    site_header = "Portcullis supervision"
    site_title = "Portcullis admin"
    index_title = "Supervision"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)

    def login(self, request: HttpRequest, extra_context: dict[str, object] | None = None) -> HttpResponse:
        # A verified user who lands here simply has no admin access: sending them to
        # sign in again would loop straight back.
        if is_verified(request.user):
            raise PermissionDenied("Your role does not include the supervision admin.")
        target = request.GET.get("next") or reverse("admin:index")
        return HttpResponseRedirect(f"{reverse('accounts:login')}?{urlencode({'next': target})}")

    def index(self, request: HttpRequest, extra_context: dict[str, object] | None = None) -> HttpResponse:
        overview = supervision_overview(AccessContext.from_request(request))
        return super().index(request, {**(extra_context or {}), "overview": overview})

    def logout(self, request: HttpRequest, extra_context: dict[str, object] | None = None) -> HttpResponse:
        # The admin's logout button must end the server-side session record too.
        return logout_view(request)
