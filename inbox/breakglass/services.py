"""Writes: asking for break-glass access, a supervisor's decision, the emergency grant and
the review. Access itself is an ordinary time-bound conversation grant (view and reply),
so the policy decides with it like with any other, and it dies at its expiry by itself."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.services import Kind, Severity, security_event_record
from inbox import policy
from inbox.breakglass.models import BreakGlassRequest
from inbox.models import Conversation, ConversationUserObjectPermission
from inbox.policy import CONVERSATION_CODENAMES, AccessContext
from inbox.services import InvalidRequest

logger = logging.getLogger(__name__)

Status = BreakGlassRequest.Status
MIN_REASON_LENGTH = 15
MAX_REASON_LENGTH = 500


def _grant(request: BreakGlassRequest, conversation: Conversation, *, by: User | None) -> None:
    request.expires_at = timezone.now() + timedelta(minutes=request.minutes)
    kind = "emergency break-glass" if request.emergency else "break-glass"
    for permission in Permission.objects.filter(
        content_type__app_label="inbox", codename__in=CONVERSATION_CODENAMES.values()
    ):
        ConversationUserObjectPermission.objects.update_or_create(
            content_object=conversation,
            permission=permission,
            user=request.requester,
            defaults={
                "expires_at": request.expires_at,
                "reason": f"{kind} {request.pk}: {request.reason}"[:200],
                "granted_by": by,
            },
        )


def breakglass_request(
    *, ctx: AccessContext, conversation_id: int, reason: str, minutes: int, emergency: bool = False
) -> BreakGlassRequest:
    """Ask for time-boxed access to a conversation outside one's segment. The answer is the
    same whether the conversation exists or not; an emergency request is granted at once
    where the deployment allows it, and raises an alarm."""
    reason = reason.strip()
    if not MIN_REASON_LENGTH <= len(reason) <= MAX_REASON_LENGTH:
        raise InvalidRequest(f"Give a reason of {MIN_REASON_LENGTH} to {MAX_REASON_LENGTH} characters.")
    if not 1 <= minutes <= settings.BREAKGLASS_MAX_MINUTES:
        raise InvalidRequest(f"Ask for 1 to {settings.BREAKGLASS_MAX_MINUTES} minutes.")
    if emergency and not settings.BREAKGLASS_EMERGENCY_ALLOWED:
        raise InvalidRequest("Emergency access is not enabled here: a supervisor must approve the request.")
    with transaction.atomic():
        request = BreakGlassRequest.objects.create(
            requester=ctx.user,
            conversation_ref=conversation_id,
            reason=reason,
            minutes=minutes,
            emergency=emergency,
        )
        conversation = Conversation.objects.filter(pk=conversation_id).first()
        detail = {"break_glass": request.pk, "conversation": conversation_id, "minutes": minutes}
        if emergency and conversation is not None:
            _grant(request, conversation, by=None)
            request.status, request.decided_at = Status.EMERGENCY, timezone.now()
            request.save(update_fields=["status", "decided_at", "expires_at"])
            # The alarm: granted without a second pair of eyes, so everyone watching hears of it.
            security_event_record(
                kind=Kind.CHANGE_APPLIED,
                user=ctx.user,
                severity=Severity.CRITICAL,
                detail=detail | {"emergency": True},
            )
            logger.critical("emergency break-glass granted", extra=detail | {"user_id": ctx.user.pk})
        else:
            security_event_record(
                kind=Kind.CHANGE_REQUESTED, user=ctx.user, severity=Severity.WARNING, detail=detail
            )
    return request


def _decidable(ctx: AccessContext, request: BreakGlassRequest) -> Conversation:
    if request.status != Status.PENDING:
        raise InvalidRequest("This request has been decided already.")
    if policy.widens_own_access(ctx, user_id=request.requester_id):
        raise policy.Denied("Nobody approves their own access.")
    conversation = Conversation.objects.filter(pk=request.conversation_ref).first()
    if conversation is None or not policy.can_manage(ctx, conversation):
        raise policy.Denied("You do not manage this conversation.")
    return conversation


def breakglass_approve(*, ctx: AccessContext, request: BreakGlassRequest) -> None:
    """A supervisor who manages the conversation grants the time-boxed access, from now."""
    with transaction.atomic():
        request = BreakGlassRequest.objects.select_for_update().get(pk=request.pk)
        conversation = _decidable(ctx, request)
        _grant(request, conversation, by=ctx.user)
        request.status, request.decided_by, request.decided_at = Status.APPROVED, ctx.user, timezone.now()
        request.save(update_fields=["status", "decided_by", "decided_at", "expires_at"])
        security_event_record(
            kind=Kind.CHANGE_APPLIED,
            user=ctx.user,
            severity=Severity.WARNING,
            detail={
                "break_glass": request.pk,
                "conversation": conversation.pk,
                "for_user": request.requester_id,
            },
        )


def breakglass_reject(*, ctx: AccessContext, request: BreakGlassRequest) -> None:
    with transaction.atomic():
        request = BreakGlassRequest.objects.select_for_update().get(pk=request.pk)
        _decidable(ctx, request)
        request.status, request.decided_by, request.decided_at = Status.REJECTED, ctx.user, timezone.now()
        request.save(update_fields=["status", "decided_by", "decided_at"])
        security_event_record(
            kind=Kind.CHANGE_REJECTED,
            user=ctx.user,
            detail={"break_glass": request.pk, "for_user": request.requester_id},
        )


def breakglass_review(*, ctx: AccessContext, request: BreakGlassRequest, note: str = "") -> None:
    """A supervisor has looked at what the access was used for (the conversation's access
    events): recorded, never by the one who used it."""
    if request.requester_id == ctx.user.pk:
        raise policy.Denied("Nobody reviews their own access.")
    BreakGlassRequest.objects.filter(pk=request.pk).update(
        reviewed_by=ctx.user, reviewed_at=timezone.now(), review_note=note[:MAX_REASON_LENGTH]
    )
