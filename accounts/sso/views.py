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
from accounts.views import _safe_next, _with_next, step_up_fields, step_up_target


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
@require_POST
def sso_step_up_view(request: HttpRequest, slug: str) -> HttpResponse:
    """The step-up page's "Confirm with <IdP>": keep the interrupted action, then go to the
    IdP for a fresh sign-in."""
    provider = _provider(slug)
    target, method = step_up_target(request)
    try:
        url = services.step_up_start(
            request=request,
            provider=provider,
            redirect_uri=_callback_uri(request, provider),
            action=services.PendingAction(target=target, method=method, fields=step_up_fields(request)),
        )
    except services.StepUpUnavailable as unavailable:
        return _unavailable(request, provider, str(unavailable), 400)
    except oidc.OidcError:
        return _unavailable(request, provider, f"{provider.name} cannot be reached right now.", 502)
    return render(
        request, "accounts/sso_step_up_redirect.html", {"provider": provider, "authorization_url": url}
    )


def _step_up_callback(request: HttpRequest, provider: IdentityProvider) -> HttpResponse:
    try:
        action = services.step_up_complete(
            request=request,
            provider=provider,
            redirect_uri=_callback_uri(request, provider),
            state=request.GET.get("state", ""),
            code=request.GET.get("code", ""),
            error=request.GET.get("error", ""),
        )
    except services.SignInRefused as refused:
        return _unavailable(request, provider, str(refused), 403)
    if action.method == "GET":
        return HttpResponseRedirect(action.target, status=303)
    # A GET from the IdP cannot become the interrupted post: a page posts it again.
    return render(request, "accounts/step_up_continue.html", {"provider": provider, "action": action})


@never_cache
@require_GET
def sso_callback_view(request: HttpRequest, slug: str) -> HttpResponse:
    provider = _provider(slug)
    if services.step_up_pending(request):
        return _step_up_callback(request, provider)
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
