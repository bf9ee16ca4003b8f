"""Passkey pages and the two JSON calls their script makes for WebAuthn options."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.models import User
from accounts.passkeys import selectors, services
from accounts.passkeys.forms import PasskeyAddForm
from accounts.services import step_up_is_fresh
from inbox.policy import StepUpRequired


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101  # the gate lets only users here
    return request.user


def _options(options_json: str) -> HttpResponse:
    return HttpResponse(options_json, content_type="application/json")


@never_cache
@require_POST
def passkey_add_view(request: HttpRequest) -> HttpResponse:
    """Name the passkey (from the security page), then its page's script creates it and
    posts the browser's answer here again."""
    user = _user(request)
    services.factor_change_check(request)
    form = PasskeyAddForm(request.POST)
    if form.is_valid() and form.cleaned_data["credential"]:
        try:
            services.passkey_register(
                request=request,
                user=user,
                name=form.cleaned_data["name"],
                credential=form.cleaned_data["credential"],
            )
        except services.PasskeyRefused as refused:
            form.add_error(None, str(refused))
        else:
            messages.success(request, f"Passkey “{form.cleaned_data['name']}” added.")
            return redirect("accounts:security")
    return render(request, "accounts/passkey_add.html", {"form": form}, status=400 if form.errors else 200)


@never_cache
@require_POST
def passkey_registration_options_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if not step_up_is_fresh(request):
        return JsonResponse(StepUpRequired(services.FRESH_FACTOR_MESSAGE).body(), status=403)
    return _options(services.registration_options(request=request, user=user))


@never_cache
@require_POST
def passkey_assertion_options_view(request: HttpRequest) -> HttpResponse:
    """Options for signing in (before verification) or stepping up with a passkey."""
    options_json = services.assertion_options(request=request, user=_user(request))
    if options_json is None:
        return JsonResponse({"detail": "No passkey is registered for this account."}, status=404)
    return _options(options_json)


@never_cache
@require_POST
def passkey_remove_view(request: HttpRequest, passkey_id: int) -> HttpResponse:
    user = _user(request)
    passkey = selectors.passkey_of(user=user, passkey_id=passkey_id)
    if passkey is None:
        raise Http404
    services.passkey_remove(request=request, passkey=passkey, by=user)
    messages.success(request, f"Passkey “{passkey.name}” removed.")
    return redirect("accounts:security")
