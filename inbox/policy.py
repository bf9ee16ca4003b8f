"""The policy decision point: the one place that decides who may do what to which object.

Views, API endpoints, socket consumers, Celery tasks and admin actions ask `can()` and
load protected objects only through the `access_*` loaders here. Grants live in guardian's
direct foreign-key tables with an expiry; they are read here and nowhere else (guardian's
own `has_perm` backend is deliberately not installed, as it knows nothing of expiry).

Every decision on a protected object is recorded as an access event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Model, Q, QuerySet
from django.db.models.functions import Now
from django.http import Http404, HttpRequest

from accounts.models import User
from audit.services import SESSION_ID_KEY, access_event_record, client_ip
from inbox import lookups  # noqa: F401  # registers the member_of lookup
from inbox.models import (
    Contact,
    Conversation,
    ConversationGroupObjectPermission,
    ConversationUserObjectPermission,
    Inbox,
    InboxGroupObjectPermission,
    InboxUserObjectPermission,
)

if TYPE_CHECKING:
    from accounts.models import ApiToken


class Action(enum.StrEnum):
    VIEW = "view"
    REPLY = "reply"  # reply, notes, status and labels: working the conversation
    ASSIGN = "assign"
    EXPORT = "export"
    MANAGE = "manage"


WRITE_ACTIONS = frozenset({Action.REPLY, Action.ASSIGN, Action.EXPORT, Action.MANAGE})
INBOX_CODENAMES = {action: f"{action.value}_inbox" for action in Action}
# Conversation-level grants (escalations) carry view and reply only.
CONVERSATION_CODENAMES = {Action.VIEW: "view_conversation", Action.REPLY: "reply_conversation"}
BILLING_PERMISSION = "inbox.view_invoice"


class Denied(Exception):
    """Allowed to see the object but not to do this to it: answered with 403."""


@dataclass(frozen=True)
class AccessContext:
    """Who is asking, from where: the user plus session, device and API token.

    Device posture and risk rules join here later without changing any caller.
    """

    user: User
    session_id: int | None = None
    api_token: ApiToken | None = None
    ip_address: str | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> AccessContext:
        user = request.user
        if not isinstance(user, User):
            raise Http404
        token = getattr(request, "auth", None)
        from accounts.models import ApiToken

        return cls(
            user=user,
            session_id=request.session.get(SESSION_ID_KEY) if hasattr(request, "session") else None,
            api_token=token if isinstance(token, ApiToken) else None,
            ip_address=client_ip(request),
        )

    @classmethod
    def for_task(cls, user: User) -> AccessContext:
        return cls(user=user)


# --- Grants -----------------------------------------------------------------------------


def _live() -> Q:
    # The database clock decides expiry, so an expired grant is dead on the next query
    # with no cron job in between.
    return Q(expires_at__isnull=True) | Q(expires_at__gt=Now())


def _user_usable(ctx: AccessContext) -> bool:
    user = ctx.user
    return bool(user.is_active and not user.is_locked)


def granted_inbox_ids(ctx: AccessContext, action: Action) -> QuerySet[Any]:
    """A subquery of the inbox ids where the caller holds `action` (not evaluated here)."""
    codename = INBOX_CODENAMES[action]
    user_grants = InboxUserObjectPermission.objects.filter(
        _live(), user_id=ctx.user.pk, permission__codename=codename
    ).values("content_object_id")
    team_grants = InboxGroupObjectPermission.objects.filter(
        _live(), group__user=ctx.user.pk, permission__codename=codename
    ).values("content_object_id")
    inbox_ids = Inbox.objects.filter(Q(id__member_of=user_grants) | Q(id__member_of=team_grants))
    if ctx.api_token is not None:
        inbox_ids = inbox_ids.filter(api_tokens=ctx.api_token)
    return inbox_ids.values("id")


def granted_conversation_ids(ctx: AccessContext, action: Action) -> QuerySet[Any] | None:
    codename = CONVERSATION_CODENAMES.get(action)
    if codename is None or ctx.api_token is not None:
        # API tokens are scoped to whole inboxes; escalations are for people.
        return None
    user_grants = ConversationUserObjectPermission.objects.filter(
        _live(), user_id=ctx.user.pk, permission__codename=codename
    ).values("content_object_id")
    team_grants = ConversationGroupObjectPermission.objects.filter(
        _live(), group__user=ctx.user.pk, permission__codename=codename
    ).values("content_object_id")
    return Conversation.objects.filter(Q(id__member_of=user_grants) | Q(id__member_of=team_grants)).values(
        "id"
    )


def _token_allows(ctx: AccessContext, action: Action) -> bool:
    token = ctx.api_token
    return token is None or (token.is_usable and (action is Action.VIEW or token.can_write))


def conversation_filter(ctx: AccessContext, action: Action = Action.VIEW) -> Q:
    """The condition for the conversations where the caller may do `action`."""
    if not _user_usable(ctx) or not _token_allows(ctx, action):
        return Q(pk__in=[])
    condition = Q(inbox_id__member_of=granted_inbox_ids(ctx, action))
    conversation_ids = granted_conversation_ids(ctx, action)
    if conversation_ids is not None:
        condition |= Q(id__member_of=conversation_ids)
    return condition


def visible_conversations(ctx: AccessContext) -> QuerySet[Conversation]:
    """Every conversation the caller may see, as one SQL query."""
    return Conversation.objects.filter(conversation_filter(ctx, Action.VIEW))


def visible_inboxes(ctx: AccessContext) -> QuerySet[Inbox]:
    if not _user_usable(ctx) or not _token_allows(ctx, Action.VIEW):
        return Inbox.objects.none()
    return Inbox.objects.filter(id__member_of=granted_inbox_ids(ctx, Action.VIEW))


def visible_contacts(ctx: AccessContext) -> QuerySet[Contact]:
    """Contacts are visible through a conversation the caller may see."""
    return Contact.objects.filter(id__member_of=visible_conversations(ctx).values("contact_id"))


# --- Decisions --------------------------------------------------------------------------


def _decide(ctx: AccessContext, action: Action, obj: Model) -> bool:
    if isinstance(obj, Conversation):
        return Conversation.objects.filter(conversation_filter(ctx, action), pk=obj.pk).exists()
    if isinstance(obj, Inbox):
        if not _user_usable(ctx) or not _token_allows(ctx, action):
            return False
        return Inbox.objects.filter(pk=obj.pk, id__member_of=granted_inbox_ids(ctx, action)).exists()
    if isinstance(obj, Contact):
        if action is not Action.VIEW:
            return False
        return visible_contacts(ctx).filter(pk=obj.pk).exists()
    return False


def can(ctx: AccessContext, action: Action, obj: Model) -> bool:
    """May the caller do `action` to `obj`? Deny by default; every answer is recorded."""
    allowed = _decide(ctx, action, obj)
    access_event_record(
        user_id=ctx.user.pk,
        session_id=ctx.session_id,
        api_token_id=ctx.api_token.pk if ctx.api_token else None,
        ip_address=ctx.ip_address,
        object_type=obj._meta.label_lower,
        object_id=obj.pk,
        action=action.value,
        allowed=allowed,
    )
    return allowed


def can_view_billing(ctx: AccessContext, contact: Contact) -> bool:
    """Billing data is its own module: the Billing role, never a support-only agent."""
    allowed = (
        ctx.api_token is None
        and _user_usable(ctx)
        and ctx.user.has_perm(BILLING_PERMISSION)
        and visible_contacts(ctx).filter(pk=contact.pk).exists()
    )
    access_event_record(
        user_id=ctx.user.pk,
        session_id=ctx.session_id,
        api_token_id=None,
        ip_address=ctx.ip_address,
        object_type="inbox.invoice",
        object_id=contact.pk,
        action=Action.VIEW.value,
        allowed=allowed,
    )
    return allowed


# --- Loaders: the only way to fetch a protected object ----------------------------------


def _load(ctx: AccessContext, model: type[Model], obj_id: object, action: Action) -> Any:
    try:
        pk = int(str(obj_id))
    except ValueError:
        raise Http404 from None
    # Beyond bigint: no such row, and PostgreSQL would refuse the parameter.
    obj = model._default_manager.filter(pk=pk).first() if -(2**63) <= pk < 2**63 else None
    if obj is None:
        raise Http404
    if action is not Action.VIEW and can(ctx, action, obj):
        return obj
    # Not visible at all: 404, the same answer as a missing id, so ids leak nothing.
    if not can(ctx, Action.VIEW, obj):
        raise Http404
    if action is not Action.VIEW:
        raise Denied(f"You may see this {model._meta.verbose_name} but not {action.value} it.")
    return obj


def access_conversation(
    ctx: AccessContext, conversation_id: object, action: Action = Action.VIEW
) -> Conversation:
    conversation: Conversation = _load(ctx, Conversation, conversation_id, action)
    return conversation


def access_inbox(ctx: AccessContext, inbox_id: object, action: Action = Action.VIEW) -> Inbox:
    inbox: Inbox = _load(ctx, Inbox, inbox_id, action)
    return inbox


def access_contact(ctx: AccessContext, contact_id: object) -> Contact:
    contact: Contact = _load(ctx, Contact, contact_id, Action.VIEW)
    return contact


__all__ = [
    "AccessContext",
    "Action",
    "Denied",
    "access_contact",
    "access_conversation",
    "access_inbox",
    "can",
    "can_view_billing",
    "conversation_filter",
    "visible_contacts",
    "visible_conversations",
    "visible_inboxes",
]
