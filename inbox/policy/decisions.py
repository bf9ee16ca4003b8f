"""Decisions on single objects, and the loaders: the only way to fetch a protected object.

Grants decide first; the rules then narrow what the grants allow. Every decision on a
protected object is recorded as an access event.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.db.models import Model, Q, QuerySet
from django.http import Http404

from accounts.models import User
from audit.services import access_event_record
from inbox.models import Attachment, Contact, Conversation, Inbox
from inbox.policy import rules
from inbox.policy.context import BILLING_PERMISSION, AccessContext, Action, Denied, StepUpRequired
from inbox.policy.grants import (
    _inbox_condition,
    _token_allows,
    _user_usable,
    conversation_filter,
    visible_contacts,
    visible_conversations,
    visible_inboxes,
)

STEP_UP_MESSAGE = "This needs a fresh second factor: confirm with a code from your authenticator."
# Where a rule asks for a stronger kind of factor than a code, the prompt says which.
STEP_UP_FACTOR_MESSAGES = {
    "passkey": "This needs a passkey: confirm with one of your passkeys.",
    "passkey_bound": (
        "This needs a device-bound passkey (a security key or a passkey kept on this device, "
        "not a synced one): confirm with it."
    ),
}


def _decide(ctx: AccessContext, action: Action, obj: Model) -> bool:
    if isinstance(obj, Conversation):
        conversations = Conversation.objects.filter(conversation_filter(ctx, action), pk=obj.pk)
        if action is not Action.VIEW:
            # Acting on what one may not see would be acting blind: every action needs view.
            conversations = conversations.filter(conversation_filter(ctx, Action.VIEW))
        return conversations.exists()
    if isinstance(obj, Inbox):
        if not _user_usable(ctx) or not _token_allows(ctx, action):
            return False
        return Inbox.objects.filter(_inbox_condition(ctx, action, "id"), pk=obj.pk).exists()
    if isinstance(obj, Contact):
        if action is not Action.VIEW:
            return False
        return visible_contacts(ctx).filter(pk=obj.pk).exists()
    return False


def access_record(
    ctx: AccessContext, object_type: str, object_id: int | None, action: str, allowed: bool
) -> None:
    """One access event in the caller's name, for decisions made outside a loader (an
    export's steps, a reveal)."""
    access_event_record(
        user_id=ctx.user.pk,
        session_id=ctx.session_id,
        api_token_id=ctx.api_token.pk if ctx.api_token else None,
        ip_address=ctx.ip_address,
        object_type=object_type,
        object_id=object_id,
        action=action,
        allowed=allowed,
    )


def inbox_id_of(obj: Model) -> int | None:
    """The inbox a protected object belongs to, which rules scope by (None: no one inbox)."""
    if isinstance(obj, Inbox):
        return obj.pk
    inbox_id = getattr(obj, "inbox_id", None)
    return inbox_id if isinstance(inbox_id, int) else None


def rules_verdict(ctx: AccessContext, action: Action, obj: Model) -> rules.Verdict:
    return rules.evaluate(
        ctx, action.value, inbox_id=inbox_id_of(obj), object_type=obj._meta.label_lower, object_id=obj.pk
    )


def _apply_rules(ctx: AccessContext, action: Action, obj: Model) -> bool:
    """Whether the rules let a granted decision stand; raises StepUpRequired when only a
    fresh second factor is missing (recorded as refused until it is given)."""
    verdict = rules_verdict(ctx, action, obj)
    if verdict.effect == "step_up":
        access_record(ctx, obj._meta.label_lower, obj.pk, action.value, False)
        raise StepUpRequired(STEP_UP_FACTOR_MESSAGES.get(verdict.factor, STEP_UP_MESSAGE), verdict.rule_ids)
    return verdict.effect == "allow"


def can(ctx: AccessContext, action: Action, obj: Model) -> bool:
    """May the caller do `action` to `obj`? Deny by default; every answer is recorded.
    Raises StepUpRequired where a rule asks for a fresh second factor."""
    allowed = _decide(ctx, action, obj) and _apply_rules(ctx, action, obj)
    access_record(ctx, obj._meta.label_lower, obj.pk, action.value, allowed)
    return allowed


def sees(user: User, conversation: Conversation) -> bool:
    """Whether a third party (an assignee being chosen) can see the conversation.

    Not recorded as an access event: nobody accessed anything, and the actor's own
    decision is recorded by `can()`.
    """
    return _decide(AccessContext(user=user), Action.VIEW, conversation)


def record_listing(ctx: AccessContext, model: type[Model], count: int, *, searched: bool = False) -> None:
    """Record that the caller was shown a page of `count` objects: browsing is an access
    too, and rapid or wide browsing is what a data pull looks like. A searched page is
    "search:N", so search bursts are told apart from paging."""
    access_record(ctx, model._meta.label_lower, None, f"{'search' if searched else 'list'}:{count}", True)


def can_view_billing(ctx: AccessContext, contact: Contact) -> bool:
    """Billing data is its own module: the Billing role, never a support-only agent."""
    allowed = (
        ctx.api_token is None
        and _user_usable(ctx)
        and _role_grants(ctx, BILLING_PERMISSION)
        and visible_contacts(ctx).filter(pk=contact.pk).exists()
    )
    access_record(ctx, "inbox.invoice", contact.pk, Action.VIEW.value, allowed)
    return allowed


PII_PERMISSION = "inbox.view_pii"


def pii_visible(ctx: AccessContext) -> bool:
    """Whether personal data is shown to the caller unmasked (a role's "view PII"); who
    lacks it sees masked names, handles and message parts, and reveals one item at a time."""
    return _user_usable(ctx) and _role_grants(ctx, PII_PERMISSION)


def _role_grants(ctx: AccessContext, permission: str) -> bool:
    """Whether the caller's own or a team's role holds `permission` ("app_label.codename").
    One EXISTS, not `has_perm`'s two queries (the user's and the groups' permissions): every
    list, thread and conversation pane asks this."""
    if ctx.user.is_superuser:
        return True
    app_label, codename = permission.split(".")
    return Permission.objects.filter(
        Q(user=ctx.user) | Q(group__user=ctx.user), content_type__app_label=app_label, codename=codename
    ).exists()


def _conversations_to_open(ctx: AccessContext) -> QuerySet[Conversation]:
    # A conversation is always shown and decided with its inbox and contact (and shown
    # with its assignee): joined into the one deciding query rather than loaded one by one
    # afterwards.
    return visible_conversations(ctx).select_related("inbox", "contact", "assignee")


_VISIBLE: dict[type[Model], Any] = {
    Conversation: _conversations_to_open,
    Inbox: visible_inboxes,
    Contact: visible_contacts,
}


def _pk(obj_id: object) -> int | None:
    """An id from a URL or a frame, or None when it cannot name a row."""
    try:
        pk = int(str(obj_id))
    except ValueError:
        return None
    # Beyond bigint: no such row, and PostgreSQL would refuse the parameter.
    return pk if -(2**63) <= pk < 2**63 else None


def _load(ctx: AccessContext, model: type[Model], obj_id: object, action: Action) -> Any:
    """A missing id and an id outside the caller's segment take the same single query and
    are both recorded as denied: probing can neither time nor hear the difference, and
    monitoring sees it."""
    pk = _pk(obj_id)
    obj = _VISIBLE[model](ctx).filter(pk=pk).first() if pk is not None else None
    if obj is not None and not _apply_rules(ctx, Action.VIEW, obj):
        obj = None  # a rule closes it: as invisible as another segment's
    access_record(ctx, model._meta.label_lower, pk, Action.VIEW.value, obj is not None)
    if obj is None:
        raise Http404
    if action is not Action.VIEW and not can(ctx, action, obj):
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


def access_attachment(ctx: AccessContext, conversation_id: object, attachment_id: object) -> Attachment:
    """A file of a message, seen as part of its conversation (loaded, and decided, through
    it); the download is recorded as an access of its own. One that is not in that
    conversation is as missing as one that does not exist."""
    conversation = access_conversation(ctx, conversation_id)
    pk = _pk(attachment_id)
    in_conversation = Attachment.objects.filter(message__conversation=conversation)
    attachment = in_conversation.filter(pk=pk).first() if pk is not None else None
    access_record(ctx, Attachment._meta.label_lower, pk, "download", attachment is not None)
    if attachment is None:
        raise Http404
    return attachment
