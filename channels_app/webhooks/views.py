"""Webhook endpoints under /hooks/<provider>/<channel id>/[<hook>/], one view for every
provider in the registry.

No session reaches these views (accounts.middleware lets /hooks/ through): each delivery
proves its origin by the provider's signature or secret instead, checked on the raw body
before anything is stored. Not of the provider's content type: 415, before anything else
(the channel is not looked up, the body not read), so the answer says nothing about the
channel or the signature. Refused: 403, nothing stored, a security event. Too large: 413.
Unreadable: 400. Accepted: stored durably, answered at once, processed by a task.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseNotFound
from django.views.decorators.csrf import csrf_exempt

from channels_app.webhooks import services
from channels_app.webhooks.contract import HookRequest
from channels_app.webhooks.items import Malformed
from channels_app.webhooks.registry import provider_for
from channels_app.webhooks.services import Refused


class BodyTooLarge(Exception):
    pass


def _body(request: HttpRequest) -> bytes:
    """The raw body, read no further than the limit (a chunked body declares no length)."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    declared = request.META.get("CONTENT_LENGTH", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = request.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge
    return body


def _plain(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


@csrf_exempt
def webhook(request: HttpRequest, provider_name: str, channel_id: int, hook: str = "") -> HttpResponse:
    provider = provider_for(provider_name)
    endpoint = provider.hooks.get(hook) if provider is not None else None
    if provider is None or endpoint is None:
        return HttpResponseNotFound()
    if request.method not in provider.methods:
        return HttpResponseNotAllowed(provider.methods)
    if request.method == "POST" and request.content_type != provider.content_type:
        services.delivery_type_refused(
            request=request, channel_id=channel_id, provider=provider.name, expected=provider.content_type
        )
        return _plain(f"Unsupported Media Type: this webhook accepts {provider.content_type} only.", 415)
    try:
        if request.method == "GET":
            challenge = services.subscription_verify(
                provider=provider, channel_id=channel_id, params=request.GET.dict(), request=request
            )
            return _plain(challenge, 200)
        delivery = HookRequest(
            endpoint=endpoint, body=_body(request), headers=request.headers, full_path=request.get_full_path()
        )
        answer = services.delivery_accept(
            provider=provider, channel_id=channel_id, hook=delivery, request=request
        )
    except Refused:
        return _plain("Forbidden", 403)
    except BodyTooLarge:
        return _plain("Payload too large", 413)
    except Malformed as exc:
        return _plain(str(exc), 400)
    return HttpResponse(answer.body, content_type=answer.content_type)
