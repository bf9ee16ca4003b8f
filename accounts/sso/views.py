"""The IdP sign-in's three doors: out to the IdP, back from it, and its back-channel logout."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.services import has_confirmed_totp
from accounts.sso import oidc, services
from accounts.sso.models import IdentityProvider
from accounts.sso.selectors import enabled_provider
from accounts.views import _safe_next, _with_next


def _provider(slug: str) -> IdentityProvider:
    provider = enabled_provider(slug)
    if provider is None:
        raise Http404
    return provider


def _callback_uri(request: HttpRequest, provider: IdentityProvider) -> str:
    return request.build_absolute_uri(reverse("accounts:sso_callback", args=[provider.slug]))


def _unavailable(request: HttpRequest, provider: IdentityProvider, message: str, status: int) -> HttpResponse:
    return render(
        request, "accounts/sso_refused.html", {"provider": provider, "message": message}, status=status
    )


@never_cache
@require_GET
def sso_start_view(request: HttpRequest, slug: str) -> HttpResponse:
    provider = _provider(slug)
    try:
        url = services.sign_in_start(
            request=request,
            provider=provider,
            redirect_uri=_callback_uri(request, provider),
            next_url=_safe_next(request),
        )
    except oidc.OidcError:
        return _unavailable(request, provider, f"{provider.name} cannot be reached right now.", 502)
    return HttpResponseRedirect(url)


@never_cache
@require_GET
def sso_callback_view(request: HttpRequest, slug: str) -> HttpResponse:
    provider = _provider(slug)
    try:
        result = services.sign_in_complete(
            request=request,
            provider=provider,
            redirect_uri=_callback_uri(request, provider),
            state=request.GET.get("state", ""),
            code=request.GET.get("code", ""),
            error=request.GET.get("error", ""),
        )
    except services.SignInRefused as refused:
        return _unavailable(request, provider, str(refused), 403)
    if result.verified:
        return HttpResponseRedirect(result.next_url)
    # The IdP's assurance is too weak for this provider: Portcullis's own second factor.
    step = "accounts:otp" if has_confirmed_totp(result.user) else "accounts:enroll"
    return HttpResponseRedirect(_with_next(step, result.next_url))


@csrf_exempt  # the IdP posts here, server to server; the signed logout token is the proof
@never_cache
@require_POST
def sso_backchannel_logout_view(request: HttpRequest, slug: str) -> HttpResponse:
    provider = _provider(slug)
    try:
        services.backchannel_logout(
            provider=provider, logout_token=request.POST.get("logout_token", ""), request=request
        )
    except oidc.OidcError:
        return HttpResponse(status=400)
    return HttpResponse(status=200)
