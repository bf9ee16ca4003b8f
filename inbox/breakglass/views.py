"""The agent's break-glass page: ask for time-boxed access, see one's own requests."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from inbox.breakglass import selectors, services
from inbox.policy import AccessContext
from inbox.selectors import MAX_BIGINT
from inbox.services import InvalidRequest


class BreakGlassForm(forms.Form):
    conversation = forms.IntegerField(min_value=1, max_value=MAX_BIGINT, label="Conversation number")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=services.MAX_REASON_LENGTH)
    minutes = forms.IntegerField(min_value=1, initial=30, label="For how many minutes")
    emergency = forms.BooleanField(required=False, label="Emergency: grant at once and raise the alarm")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # Form's own signature
        self.fields["minutes"].widget.attrs["max"] = settings.BREAKGLASS_MAX_MINUTES
        if not settings.BREAKGLASS_EMERGENCY_ALLOWED:
            del self.fields["emergency"]


def _page(
    request: HttpRequest, ctx: AccessContext, form: BreakGlassForm, *, status: int = 200
) -> HttpResponse:
    context = {"form": form, "requests": selectors.requests_of(ctx.user)}
    return render(request, "breakglass/request.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def breakglass_view(request: HttpRequest) -> HttpResponse:
    ctx = AccessContext.from_request(request)
    if request.method == "GET":
        return _page(request, ctx, BreakGlassForm())
    form = BreakGlassForm(request.POST)
    if not form.is_valid():
        return _page(request, ctx, form, status=400)
    try:
        made = services.breakglass_request(
            ctx=ctx,
            conversation_id=form.cleaned_data["conversation"],
            reason=form.cleaned_data["reason"],
            minutes=form.cleaned_data["minutes"],
            emergency=form.cleaned_data.get("emergency", False),
        )
    except InvalidRequest as error:
        form.add_error(None, str(error))
        return _page(request, ctx, form, status=400)
    messages.success(
        request,
        "Access granted at once; supervisors have been alerted."
        if made.status == made.Status.EMERGENCY
        else "Request sent: a supervisor will decide.",
    )
    return redirect("breakglass:request")
