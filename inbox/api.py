"""The REST API under /api/v1/: thin views over the policy, selectors and services.

Every object is loaded through an `inbox.policy` loader (404 outside the caller's segment,
403 when visible but the action is not allowed); lists come from the policy's visible sets.
No view loosens the default permission (a verified session or a usable API token).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django.http import HttpRequest
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from accounts.models import User
from inbox import dlp, policy, selectors, services
from inbox.dlp.masking import mask_handle, mask_name, mask_text
from inbox.models import (
    Attachment,
    Contact,
    ContactIdentity,
    Conversation,
    Inbox,
    Invoice,
    Label,
    Message,
    Note,
)
from inbox.policy import AccessContext, Action
from inbox.selectors import MAX_BIGINT, ConversationFilters

MAX_PAGE_SIZE = 100


def _context(request: Request) -> AccessContext:
    # DRF's Request proxies the Django request and carries the authenticated user and,
    # for a token client, the ApiToken as request.auth, which the policy narrows to.
    return AccessContext.from_request(cast(HttpRequest, request))


# --- Serializers (output) ---------------------------------------------------------------


def _masking(request: Request) -> dict[str, Any]:
    """The serializer context that lets `PiiMasked` ask the policy about this caller."""
    return {"request": request}


class PiiMasked:
    """Output fields masked for a caller without "view PII" (`policy.pii_visible`), asked
    once per request: names to initials, handles cut, personal data in texts masked."""

    masked: dict[str, Callable[[str], str]] = {}

    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)  # type: ignore[misc]  # a Serializer mixin
        request = self.context.get("request")  # type: ignore[attr-defined]  # a Serializer mixin
        if request is None:
            return data
        if (hidden := getattr(request, "pii_masked", None)) is None:
            hidden = request.pii_masked = not policy.pii_visible(_context(request))
        if hidden:
            for name, mask in self.masked.items():
                if data.get(name):
                    data[name] = mask(data[name])
        return data


class ErrorSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # Added here, not declared: `errors` is also the name of a Serializer attribute.
        fields = super().get_fields()
        fields["errors"] = serializers.DictField(
            required=False, help_text="Per-field messages of a validation error."
        )
        fields["code"] = serializers.CharField(
            required=False, help_text="`dlp_blocked` or `dlp_justification_required`: outbound DLP refused."
        )
        fields["findings"] = serializers.ListField(
            child=serializers.DictField(),
            required=False,
            help_text="What outbound DLP found, masked, with the rule that matched.",
        )
        return fields


class InboxSerializer(serializers.ModelSerializer[Inbox]):
    class Meta:
        model = Inbox
        fields = ["id", "name", "channel_kind", "module"]
        read_only_fields = fields


class UserSummarySerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = ["id", "username"]
        read_only_fields = fields


class ContactSummarySerializer(PiiMasked, serializers.ModelSerializer[Contact]):
    masked = {"name": mask_name}

    class Meta:
        model = Contact
        fields = ["id", "name"]
        read_only_fields = fields


class LabelSerializer(serializers.ModelSerializer[Label]):
    class Meta:
        model = Label
        fields = ["id", "name", "color"]
        read_only_fields = fields


class ConversationSerializer(PiiMasked, serializers.ModelSerializer[Conversation]):
    masked = {"subject": mask_text}
    inbox = InboxSerializer(read_only=True)
    contact = ContactSummarySerializer(read_only=True)
    assignee = UserSummarySerializer(read_only=True, allow_null=True)
    team_id = serializers.IntegerField(read_only=True, allow_null=True)
    labels = LabelSerializer(many=True, read_only=True)

    class Meta:
        model = Conversation
        fields = [
            "id",
            "inbox",
            "contact",
            "subject",
            "status",
            "priority",
            "assignee",
            "team_id",
            "labels",
            "snoozed_until",
            "created_at",
            "last_activity_at",
        ]
        read_only_fields = fields


class ConversationListItemSerializer(ConversationSerializer):
    masked = {"subject": mask_text, "last_message_text": mask_text}
    last_message_text = serializers.CharField(read_only=True, allow_null=True)

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "last_message_text"]
        read_only_fields = fields


class ConversationPageSerializer(serializers.Serializer[Any]):
    results = ConversationListItemSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or null on the last one.")


class InboxListSerializer(serializers.Serializer[Any]):
    results = InboxSerializer(many=True)


class AttachmentSerializer(serializers.ModelSerializer[Attachment]):
    class Meta:
        model = Attachment
        fields = ["id", "filename", "content_type", "size", "sha256"]
        read_only_fields = fields


class MessageSerializer(PiiMasked, serializers.ModelSerializer[Message]):
    masked = {"text": mask_text, "html": mask_text, "sender_name": mask_name}
    sender_user = UserSummarySerializer(read_only=True, allow_null=True)
    attachments = AttachmentSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "direction",
            "sender_user",
            "sender_name",
            "text",
            "html",
            "delivery_status",
            "created_at",
            "attachments",
        ]
        read_only_fields = fields


class MessageListSerializer(serializers.Serializer[Any]):
    results = MessageSerializer(many=True)


class NoteSerializer(serializers.ModelSerializer[Note]):
    author = UserSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = Note
        fields = ["id", "author", "text", "created_at"]
        read_only_fields = fields


class NoteListSerializer(serializers.Serializer[Any]):
    results = NoteSerializer(many=True)


class ContactIdentitySerializer(PiiMasked, serializers.ModelSerializer[ContactIdentity]):
    masked = {"handle": mask_handle}

    class Meta:
        model = ContactIdentity
        fields = ["channel_kind", "handle"]
        read_only_fields = fields


class InvoiceSerializer(serializers.ModelSerializer[Invoice]):
    class Meta:
        model = Invoice
        fields = ["id", "number", "amount_cents", "currency", "status", "issued_at"]
        read_only_fields = fields


class ContactSerializer(PiiMasked, serializers.ModelSerializer[Contact]):
    masked = {"name": mask_name}
    identities = ContactIdentitySerializer(many=True, read_only=True)

    class Meta:
        model = Contact
        fields = ["id", "name", "created_at", "identities"]
        read_only_fields = fields


class ContactDetailSerializer(ContactSerializer):
    """A contact with its identities; `invoices` is present only for the billing module."""

    # Documents the answer's shape only: the view adds `invoices` itself when the policy
    # allows billing data, and the key is absent otherwise (not empty).
    invoices = InvoiceSerializer(many=True, required=False, help_text="Only for the billing module.")

    class Meta(ContactSerializer.Meta):
        fields = [*ContactSerializer.Meta.fields, "invoices"]
        read_only_fields = ContactSerializer.Meta.fields


# --- Serializers (input) ----------------------------------------------------------------


# Patterns the server applies, so that the schema states them too. Values are matched
# after DRF trims surrounding whitespace; drf-spectacular writes \Z as the schema's `$`.
NON_BLANK_WITHOUT_NUL = r"^[^\x00]*[^\s\x00][^\x00]*\Z"
WITHOUT_NUL = r"^[^\x00]+\Z"
STATUS_LIST = r"^({0})(,({0}))*\Z".format("|".join(Conversation.Status.values))
# A cursor is unpadded URL-safe base64; whether it decodes to a position is the selector's
# to check, which no pattern can state.
CURSOR = r"^[A-Za-z0-9_-]+\Z"


class TextSerializer(serializers.Serializer[Any]):
    # The service checks the stripped text again; this refuses the obvious first.
    text = serializers.RegexField(NON_BLANK_WITHOUT_NUL, min_length=1, max_length=services.MAX_TEXT_LENGTH)
    justification = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=dlp.services.MAX_JUSTIFICATION_LENGTH,
        help_text="Sends a text a DLP rule holds for a justification; recorded with the finding.",
    )


class ConversationQuerySerializer(serializers.Serializer[Any]):
    # Ids beyond bigint are refused here: PostgreSQL would fail on them, not answer empty.
    inbox = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BIGINT)
    status = serializers.RegexField(
        STATUS_LIST,
        required=False,
        max_length=100,
        help_text=f"Comma-separated, of {', '.join(Conversation.Status.values)}. Default: open.",
    )
    scope = serializers.ChoiceField(choices=ConversationFilters.SCOPES, default="all")
    q = serializers.RegexField(
        WITHOUT_NUL,
        required=False,
        allow_blank=True,
        max_length=selectors.MAX_SEARCH_LENGTH,
        help_text="Message text.",
    )
    # Decoded, and refused as 400 when not valid, by the selector.
    cursor = serializers.RegexField(
        CURSOR, required=False, max_length=200, help_text="From the `next` link, unchanged."
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # Added here, not declared: `label` is also the name of a Field attribute.
        fields = super().get_fields()
        fields["label"] = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BIGINT)
        return fields

    def validate_status(self, value: str) -> tuple[str, ...]:
        # STATUS_LIST has let through only known statuses; repeats count once.
        return tuple(dict.fromkeys(value.split(",")))

    def filters(self) -> ConversationFilters:
        data = self.validated_data
        return ConversationFilters(
            inbox_id=data.get("inbox"),
            statuses=data.get("status", ConversationFilters.statuses),
            scope=data["scope"],
            label_id=data.get("label"),
            search=data.get("q", ""),
        )


ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="No valid session or token."),
    403: OpenApiResponse(ErrorSerializer, description="Not verified, or visible but not allowed."),
    404: OpenApiResponse(ErrorSerializer, description="No such object in the caller's segment."),
}
BAD_REQUEST = {400: OpenApiResponse(ErrorSerializer, description="Malformed or unacceptable input.")}


def _id_parameter(name: str) -> OpenApiParameter:
    # The URL takes any digits; an id no row can have is simply not found (404).
    schema = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_BIGINT}
    return OpenApiParameter(name, schema, OpenApiParameter.PATH)


CONVERSATION_ID = _id_parameter("conversation_id")
CONTACT_ID = _id_parameter("contact_id")
MESSAGE_ID = _id_parameter("message_id")


# --- Views ------------------------------------------------------------------------------


class InboxListView(APIView):
    @extend_schema(operation_id="inboxes_list", responses={200: InboxListSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        inboxes = policy.visible_inboxes(_context(request)).order_by("name", "id")
        return Response(InboxListSerializer({"results": inboxes}).data)


class ConversationListView(APIView):
    @extend_schema(
        operation_id="conversations_list",
        parameters=[ConversationQuerySerializer],
        responses={200: ConversationPageSerializer, **BAD_REQUEST, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = ConversationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = selectors.conversation_list(
            ctx=_context(request),
            filters=query.filters(),
            cursor=query.validated_data.get("cursor"),
            limit=query.validated_data.get("limit", selectors.PAGE_SIZE),
        )
        next_url = None
        if page.next_cursor is not None:
            next_url = replace_query_param(request.build_absolute_uri(), "cursor", page.next_cursor)
        return Response(
            ConversationPageSerializer(
                {"results": page.rows, "next": next_url}, context=_masking(request)
            ).data
        )


class ConversationDetailView(APIView):
    @extend_schema(
        operation_id="conversations_retrieve",
        parameters=[CONVERSATION_ID],
        responses={200: ConversationSerializer, **ERRORS},
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = policy.access_conversation(_context(request), conversation_id)
        return Response(ConversationSerializer(conversation, context=_masking(request)).data)


def _thread_items(request: Request, conversation_id: int, kind: str) -> list[Any]:
    """The conversation's messages or its notes ("message" | "note"), in thread order."""
    conversation = policy.access_conversation(_context(request), conversation_id)
    return [
        entry.item for entry in selectors.conversation_thread(conversation=conversation) if entry.kind == kind
    ]


def _text_for_conversation(
    request: Request, conversation_id: int
) -> tuple[AccessContext, Conversation, str, str]:
    """The caller, the conversation they may reply in, and the text (with its optional
    justification) they posted to it."""
    ctx = _context(request)
    # Authorise before reading the body: an outsider learns nothing from a 400.
    conversation = policy.access_conversation(ctx, conversation_id, Action.REPLY)
    body = TextSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    return ctx, conversation, body.validated_data["text"], body.validated_data["justification"]


class ConversationMessagesView(APIView):
    @extend_schema(
        operation_id="conversations_messages_list",
        parameters=[CONVERSATION_ID],
        responses={200: MessageListSerializer, **ERRORS},
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        messages = _thread_items(request, conversation_id, "message")
        return Response(MessageListSerializer({"results": messages}, context=_masking(request)).data)

    @extend_schema(
        operation_id="conversations_messages_create",
        parameters=[CONVERSATION_ID],
        request=TextSerializer,
        responses={201: MessageSerializer, **BAD_REQUEST, **ERRORS},
        description="Reply to the contact: the message is queued for its channel to send.",
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        ctx, conversation, text, justification = _text_for_conversation(request, conversation_id)
        message = services.conversation_reply(
            ctx=ctx, conversation=conversation, text=text, justification=justification
        )
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class ConversationNotesView(APIView):
    @extend_schema(
        operation_id="conversations_notes_list",
        parameters=[CONVERSATION_ID],
        responses={200: NoteListSerializer, **ERRORS},
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        notes = _thread_items(request, conversation_id, "note")
        return Response(NoteListSerializer({"results": notes}).data)

    @extend_schema(
        operation_id="conversations_notes_create",
        parameters=[CONVERSATION_ID],
        request=TextSerializer,
        responses={201: NoteSerializer, **BAD_REQUEST, **ERRORS},
        description="Add an internal note; it is never sent to the contact.",
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        ctx, conversation, text, justification = _text_for_conversation(request, conversation_id)
        note = services.note_add(ctx=ctx, conversation=conversation, text=text, justification=justification)
        return Response(NoteSerializer(note).data, status=status.HTTP_201_CREATED)


class ContactDetailView(APIView):
    @extend_schema(
        operation_id="contacts_retrieve",
        parameters=[CONTACT_ID],
        responses={200: ContactDetailSerializer, **ERRORS},
    )
    def get(self, request: Request, contact_id: int) -> Response:
        ctx = _context(request)
        contact = policy.access_contact(ctx, contact_id)
        body = ContactSerializer(contact, context=_masking(request)).data
        invoices = selectors.contact_invoices(ctx=ctx, contact_id=contact.pk)
        if invoices is not None:
            body["invoices"] = InvoiceSerializer(invoices, many=True).data
        return Response(body)


class MessageRevealView(APIView):
    @extend_schema(
        operation_id="conversations_messages_reveal",
        parameters=[CONVERSATION_ID, MESSAGE_ID],
        request=None,
        responses={200: MessageSerializer, **ERRORS},
        description="The message unmasked, for a caller without “view PII”: recorded, and it may "
        "need a fresh second factor (403 `step_up_required`).",
    )
    def post(self, request: Request, conversation_id: int, message_id: int) -> Response:
        ctx = _context(request)
        conversation = policy.access_conversation(ctx, conversation_id)
        message = dlp.thread_message_for_reveal(ctx=ctx, conversation=conversation, message_id=message_id)
        return Response(MessageSerializer(message).data)


class ContactRevealView(APIView):
    @extend_schema(
        operation_id="contacts_reveal",
        parameters=[CONTACT_ID],
        request=None,
        responses={200: ContactSerializer, **ERRORS},
        description="The contact unmasked, for a caller without “view PII”: recorded, and it may "
        "need a fresh second factor (403 `step_up_required`).",
    )
    def post(self, request: Request, contact_id: int) -> Response:
        ctx = _context(request)
        contact = policy.access_contact(ctx, contact_id)
        dlp.pii_reveal(ctx=ctx, obj=contact)
        return Response(ContactSerializer(contact).data)


@extend_schema(exclude=True)
class UnknownEndpointView(APIView):
    """Answers any other path under the API with a JSON 404, after authentication."""

    def get(self, request: Request) -> Response:
        raise NotFound("No such API endpoint.")

    post = put = patch = delete = get
