"""The widget's HTTP side: file uploads, authenticated by the visitor's token.

No session reaches these views (accounts.middleware lets /livechat/ through). The page's
Origin must be on the channel's allowlist, exactly as for the socket; only then does the
answer carry the CORS header that lets that page read it. The request carries no cookie
and no ambient credential, so there is nothing for a CSRF token to protect.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from channels_app.livechat import selectors
from channels_app.livechat import services as livechat
from channels_app.livechat.services import VisitorInputError, VisitorRefused
from inbox import events
from inbox.event_types import LiveChatMessage

# Room for the multipart framing and the small fields around the file.
UPLOAD_OVERHEAD_BYTES = 64 * 1024
INPUT_ERROR_STATUS = {"too_large": 413, "type_refused": 415, "rate_limited": 429}


def _answer(origin: str, body: dict[str, Any], status: int) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Access-Control-Allow-Origin"] = origin
    response["Vary"] = "Origin"
    return response


@csrf_exempt
def upload_view(request: HttpRequest, key: str) -> JsonResponse:
    origin = request.headers.get("Origin", "")
    channel = selectors.channel_for_visitor(key=key, origin=origin)
    if channel is None:
        # No CORS header: a page on a foreign origin cannot even read this answer.
        return JsonResponse({"error": "forbidden", "message": "This chat is not available here."}, status=403)
    if request.method != "POST":
        return _answer(origin, {"error": "method", "message": "Use POST."}, 405)
    declared = request.META.get("CONTENT_LENGTH", "")
    if declared.isdigit() and int(declared) > settings.LIVECHAT_MAX_UPLOAD_BYTES + UPLOAD_OVERHEAD_BYTES:
        return _answer(origin, {"error": "too_large", "message": "The file is too large."}, 413)
    try:
        visitor = livechat.visitor_for_token(channel=channel, token=request.POST.get("token"))
        if livechat.prechat_missing(channel, visitor):
            raise VisitorInputError("prechat_required", "Fill in the form first.")
        upload = request.FILES.get("file")
        if upload is None:
            raise VisitorInputError("invalid", "Choose a file to send.")
        received = livechat.visitor_upload_receive(
            visitor=visitor,
            origin=origin,
            ip_address=request.META.get("REMOTE_ADDR"),
            upload=upload,
            caption=request.POST.get("text", ""),
            client_id=request.POST.get("id"),
        )
    except VisitorRefused as refused:
        status = 401 if refused.code == livechat.Close.TOKEN_INVALID else 403
        return _answer(origin, {"error": "refused", "code": refused.code, "message": refused.reason}, status)
    except VisitorInputError as error:
        status = INPUT_ERROR_STATUS.get(error.code, 400)
        return _answer(origin, {"error": error.code, "message": str(error)}, status)
    # The visitor's other tabs show it too; the uploading tab has it from this answer.
    frame: LiveChatMessage = {"type": "livechat.message", "message": received.shown}
    events.send_to_groups([visitor.group], frame)
    return _answer(origin, {"message": received.shown}, 201)
