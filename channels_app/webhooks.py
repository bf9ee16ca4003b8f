"""Webhook endpoints under /hooks/<provider>/<channel id>/.

No session reaches these views (accounts.middleware lets /hooks/ through): each delivery
proves its origin by the provider's signature or secret instead, checked on the raw body
before anything is stored. Not of the provider's content type: 415, before anything else
(the channel is not looked up, the body not read), so the answer says nothing about the
channel or the signature. Refused: 403, nothing stored, a security event. Too large: 413.
Unreadable: 400. Accepted: stored durably, answered at once, processed by a task.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from channels_app import social_services
from channels_app.models import InboundEvent, Provider
from channels_app.providers import meta, telegram, twilio
from channels_app.providers.common import Malformed
from channels_app.social_services import Refused

Endpoint = InboundEvent.Endpoint
View = Callable[..., HttpResponse]

TWILIO_HOOKS = {
    "sms": Endpoint.TWILIO_SMS,
    "sms-status": Endpoint.TWILIO_SMS_STATUS,
    "voice": Endpoint.TWILIO_VOICE,
    "dial": Endpoint.TWILIO_DIAL,
    "recording": Endpoint.TWILIO_RECORDING,
    "transcription": Endpoint.TWILIO_TRANSCRIPTION,
    "call-status": Endpoint.TWILIO_CALL_STATUS,
}


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


def _hook(*, provider: Provider, content_type: str) -> Callable[[View], View]:
    """The answers every provider gets for a delivery of another content type than the one
    it posts, and for a refused, oversized or unreadable one."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, channel_id: int, **kwargs: object) -> HttpResponse:
            # Other methods go on to the view's own 405 (or, for Meta's GET, carry no body).
            if request.method == "POST" and request.content_type != content_type:
                social_services.delivery_type_refused(
                    request=request, channel_id=channel_id, provider=provider, expected=content_type
                )
                return _plain(f"Unsupported Media Type: this webhook accepts {content_type} only.", 415)
            try:
                return view(request, channel_id, **kwargs)
            except Refused:
                return _plain("Forbidden", 403)
            except BodyTooLarge:
                return _plain("Payload too large", 413)
            except Malformed as exc:
                return _plain(str(exc), 400)

        return csrf_exempt(wrapper)

    return decorate


@_hook(provider=Provider.META, content_type=meta.CONTENT_TYPE)
@require_http_methods(["GET", "POST"])
def meta_webhook(request: HttpRequest, channel_id: int) -> HttpResponse:
    if request.method == "GET":
        challenge = social_services.meta_subscription_verify(
            channel_id=channel_id, params=request.GET.dict(), request=request
        )
        return _plain(challenge, 200)
    social_services.meta_delivery_accept(
        channel_id=channel_id,
        body=_body(request),
        signature=request.headers.get(meta.SIGNATURE_HEADER),
        request=request,
    )
    return _plain("OK", 200)


@_hook(provider=Provider.TELEGRAM, content_type=telegram.CONTENT_TYPE)
@require_POST
def telegram_webhook(request: HttpRequest, channel_id: int) -> HttpResponse:
    social_services.telegram_update_accept(
        channel_id=channel_id,
        body=_body(request),
        secret=request.headers.get(telegram.SECRET_HEADER),
        request=request,
    )
    return _plain("OK", 200)


@_hook(provider=Provider.TWILIO, content_type=twilio.CONTENT_TYPE)
@require_POST
def twilio_webhook(request: HttpRequest, channel_id: int, hook: str) -> HttpResponse:
    endpoint = TWILIO_HOOKS.get(hook)
    if endpoint is None:
        return HttpResponseNotFound()
    channel, form = social_services.twilio_request_accept(
        channel_id=channel_id,
        endpoint=endpoint,
        body=_body(request),
        signature=request.headers.get(twilio.SIGNATURE_HEADER),
        full_path=request.get_full_path(),
        request=request,
    )
    if endpoint == Endpoint.TWILIO_VOICE:
        twiml = twilio.incoming_call_twiml(channel)
    elif endpoint == Endpoint.TWILIO_DIAL:
        twiml = twilio.dial_result_twiml(channel, form)
    elif endpoint == Endpoint.TWILIO_RECORDING:
        twiml = twilio.HANGUP_TWIML
    else:
        twiml = twilio.EMPTY_TWIML
    return HttpResponse(twiml, content_type="text/xml; charset=utf-8")
