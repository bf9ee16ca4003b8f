"""POST /api/v1/channels/<id>/messages: an integration pushes its customer's message.

Authenticated by the integration's API token only (a browser session is refused: agents
do not write as customers), loaded through the policy (another segment's channel, or one
the token does not cover: 404; a read-only token: 403), bounded in size (413) and shape
(400), stored once per integration message id (a repeated push answers like the first).
Accepted: 202, processed by the webhook channels' task like any delivery.
"""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpRequest
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.api import selectors, services
from inbox import policy

MAX_BODY_BYTES = 64 * 1024
# Printable ids without spaces: the integration's own message and customer ids.
EXTERNAL_ID = r"^[\x21-\x7e]{1,190}\Z"
NON_BLANK_WITHOUT_NUL = r"^[^\x00]*[^\s\x00][^\x00]*\Z"


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = f"The body is larger than {MAX_BODY_BYTES} bytes."
    default_code = "too_large"


class ApiErrorSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()


class SenderSerializer(serializers.Serializer[Any]):
    id = serializers.RegexField(EXTERNAL_ID, help_text="The customer's id in the integration.")
    name = serializers.RegexField(r"^[^\x00]{0,200}\Z", required=False, default="")


class PushedMessageSerializer(serializers.Serializer[Any]):
    message_id = serializers.RegexField(
        EXTERNAL_ID, help_text="The integration's id for the message: a repeated push is stored once."
    )
    sender = SenderSerializer()
    text = serializers.RegexField(NON_BLANK_WITHOUT_NUL, max_length=20_000)


class PushAcceptedSerializer(serializers.Serializer[Any]):
    message_id = serializers.CharField()
    duplicate = serializers.BooleanField(help_text="True when this message id was pushed before.")


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ApiErrorSerializer, description=description)


class ChannelMessagesView(APIView):
    @extend_schema(
        operation_id="channels_messages_push",
        parameters=[
            OpenApiParameter(
                "channel_id",
                {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1},
                OpenApiParameter.PATH,
            )
        ],
        request=PushedMessageSerializer,
        responses={
            202: PushAcceptedSerializer,
            400: _error("Malformed or unacceptable input."),
            401: _error("No valid token."),
            403: _error("Not an integration's token, or a read-only one."),
            404: _error("No such API channel in the token's inboxes."),
            413: _error(f"The body is larger than {MAX_BODY_BYTES} bytes."),
            415: _error("The body is not JSON."),
        },
        description="Push a customer's message into the API channel's inbox. The agents' replies "
        "are POSTed to the channel's callback URL, signed (see docs/adding-a-channel.md).",
    )
    def post(self, request: Request, channel_id: int) -> Response:
        ctx = policy.AccessContext.from_request(cast(HttpRequest, request))
        if ctx.api_token is None:
            raise exceptions.PermissionDenied("Pushing messages takes an integration's API token.")
        channel = selectors.api_channel_for_push(ctx, channel_id)
        declared = request.META.get("CONTENT_LENGTH", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise PayloadTooLarge
        pushed = PushedMessageSerializer(data=request.data)
        pushed.is_valid(raise_exception=True)
        stored = services.api_message_accept(channel=channel, message=pushed.validated_data)
        answer = {"message_id": pushed.validated_data["message_id"], "duplicate": not stored}
        return Response(PushAcceptedSerializer(answer).data, status=status.HTTP_202_ACCEPTED)
