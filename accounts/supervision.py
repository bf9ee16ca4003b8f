"""Supervisors' privilege changes: within the delegation, never widening the actor's own
access, and applied only after a second supervisor approves where the rules ask for it.

Every change is a `ChangeRequest`, whether it waits for four eyes or not, so one trail
holds who asked, who approved, why and what changed. Each kind of change is a `ChangeType`
in `CHANGE_TYPES`: how it is checked against an actor, what it touches, how it is applied.
The same check runs for the requester when asking and for the approver when approving:
an approver must be able to make the change themselves, bar the second pair of eyes.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar, cast

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts import roles, services
from accounts.live import sockets_recheck
from accounts.models import (
    ApprovalRule,
    BrowserDevice,
    ChangeKind,
    ChangeRequest,
    EnrollmentCode,
    IdpGroupMapping,
    User,
    UserSession,
)
from audit.alerts.models import Alert, AlertSeverity
from audit.alerts.selectors import alerts_visible
from audit.services import Kind, Severity, security_event_record
from inbox import policy
from inbox.models import (
    Conversation,
    ConversationGroupObjectPermission,
    ConversationUserObjectPermission,
    Inbox,
    InboxGroupObjectPermission,
    InboxUserObjectPermission,
    Module,
    Team,
    TeamGroupObjectPermission,
    TeamUserObjectPermission,
)
from inbox.policy import AccessContext

Result = TypeVar("Result")

# Roles whose holders reach the supervision admin.
STAFF_ROLES = frozenset({roles.SUPERVISOR, roles.ADMINISTRATOR})


class SupervisionRefused(Exception):
    """The actor may not make (or approve) this change; the message says why."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


def _records_refusals(service: Callable[..., Result]) -> Callable[..., Result]:
    """Record every refusal as a security event, after the service's own transaction has
    rolled back (inside it, the record would roll back too)."""

    @functools.wraps(service)
    def recorded(*args: Any, ctx: AccessContext, request: HttpRequest | None, **kwargs: Any) -> Result:
        try:
            return service(*args, ctx=ctx, request=request, **kwargs)
        except SupervisionRefused as refused:
            security_event_record(
                kind=Kind.PRIVILEGE_DENIED,
                request=request,
                user=ctx.user,
                severity=Severity.WARNING,
                detail={"refused": str(refused), **refused.detail},
            )
            raise

    return recorded


@dataclass(frozen=True)
class Outcome:
    change: ChangeRequest
    # An enrollment code to hand over out of band: returned once, only its hash is kept.
    enrollment_code: str | None = None

    @property
    def applied(self) -> bool:
        return self.change.state == ChangeRequest.State.APPLIED


def _refuse(ctx: AccessContext, request: HttpRequest | None, message: str, **detail: Any) -> NoReturn:
    raise SupervisionRefused(message, **detail)


# --- What an actor may hand out -----------------------------------------------------------

# What each grantable permission lets its holder do, in the words of the workspace.
ACTION_LABELS = {
    policy.INBOX_CODENAMES[policy.Action.VIEW]: "View: read the inbox's conversations",
    policy.INBOX_CODENAMES[policy.Action.REPLY]: "Reply: answer, add notes, change status and labels",
    policy.INBOX_CODENAMES[policy.Action.ASSIGN]: "Assign: hand conversations to people",
    policy.INBOX_CODENAMES[policy.Action.EXPORT]: "Export: download the inbox's conversations",
    policy.INBOX_CODENAMES[policy.Action.MANAGE]: "Manage: the inbox's grants and configuration",
    policy.CONVERSATION_CODENAMES[policy.Action.VIEW]: "View: read this conversation",
    policy.CONVERSATION_CODENAMES[policy.Action.REPLY]: "Reply: work this conversation",
    policy.MANAGE_TEAM_CODENAME: "Manage: the team's members",
}


def group_assignable_check(ctx: AccessContext, request: HttpRequest | None, group: Group) -> None:
    """A team the actor manages whose grants stay inside the actor's delegation, or a role
    the actor may give: Administrator only by administrators, Billing agent only by someone
    who manages a billing inbox."""
    team = Team.objects.filter(pk=group.pk).first()
    if team is not None:
        if not policy.managed_teams(ctx).filter(pk=team.pk).exists():
            _refuse(ctx, request, f"You do not manage the team {team.name}.", group=group.pk)
        inboxes = policy.managed_inboxes(ctx).values("id")
        teams = policy.managed_teams(ctx).values("pk")
        reaching_outside = policy.groups_reaching_outside(inboxes, teams)
        if Group.objects.filter(pk=team.pk, pk__in=reaching_outside).exists():
            _refuse(ctx, request, f"The team {team.name} reaches inboxes you do not manage.", group=group.pk)
        return
    if group.name in (roles.AGENT, roles.SUPERVISOR):
        return
    if (
        group.name == roles.BILLING_AGENT
        and policy.managed_inboxes(ctx).filter(module=Module.BILLING).exists()
    ):
        return
    if policy.is_administrator(ctx.user) and group.name != roles.ADMINISTRATOR:
        return
    if group.name == roles.ADMINISTRATOR and policy.is_administrator(ctx.user):
        return
    _refuse(ctx, request, f"You may not give the role {group.name}.", group=group.pk)


# --- The kinds of change --------------------------------------------------------------------


def _id(payload: dict[str, Any], key: str) -> int:
    # Payloads are written by the forms here; a missing id simply matches nothing.
    return int(payload.get(key) or 0)


def _group(payload: dict[str, Any]) -> Group:
    group = Group.objects.filter(pk=_id(payload, "group_id")).first()
    if group is None:
        raise SupervisionRefused("That team or role no longer exists.")
    return group


def _create_account_check(ctx: AccessContext, request: HttpRequest | None, change: ChangeRequest) -> None:
    username = str(change.payload.get("username", ""))
    if User.objects.filter(username__iexact=username).exists() and change.subject_id is None:
        _refuse(ctx, request, f"The username {username} is taken.")
    for group in Group.objects.filter(pk__in=change.payload.get("group_ids", [])):
        group_assignable_check(ctx, request, group)


def _create_account_apply(change: ChangeRequest) -> str | None:
    payload = change.payload
    user = User(
        username=payload["username"],
        email=payload.get("email", ""),
        first_name=payload.get("first_name", ""),
        last_name=payload.get("last_name", ""),
    )
    # No password yet: the person sets one with the enrollment code, so whoever typed the
    # request never knows a working credential.
    user.set_unusable_password()
    groups = list(Group.objects.filter(pk__in=payload.get("group_ids", [])))
    user.is_staff = any(group.name in STAFF_ROLES for group in groups)
    user.save()
    user.groups.set(groups)
    change.subject = user
    return enrollment_code_issue(user=user, purpose=EnrollmentCode.Purpose.NEW_ACCOUNT, change=change)


def _add_to_group_check(ctx: AccessContext, request: HttpRequest | None, change: ChangeRequest) -> None:
    group_assignable_check(ctx, request, _group(change.payload))


def _add_to_group_apply(change: ChangeRequest) -> str | None:
    subject = _subject(change)
    group = _group(change.payload)
    subject.groups.add(group)
    if group.name in STAFF_ROLES and not subject.is_staff:
        subject.is_staff = True
        subject.save(update_fields=["is_staff"])
    return None


@dataclass(frozen=True)
class GrantTarget:
    """Where a grant goes: which table, on which object, to which holder."""

    model: type[Any]
    object_model: type[Inbox] | type[Conversation] | type[Team]
    holder_field: str


GRANT_TARGETS: dict[tuple[str, str], GrantTarget] = {
    ("inbox", "user"): GrantTarget(InboxUserObjectPermission, Inbox, "user"),
    ("inbox", "team"): GrantTarget(InboxGroupObjectPermission, Inbox, "group"),
    ("conversation", "user"): GrantTarget(ConversationUserObjectPermission, Conversation, "user"),
    ("conversation", "team"): GrantTarget(ConversationGroupObjectPermission, Conversation, "group"),
    ("team", "user"): GrantTarget(TeamUserObjectPermission, Team, "user"),
    ("team", "team"): GrantTarget(TeamGroupObjectPermission, Team, "group"),
}


def grant_target(model: type[Any]) -> tuple[str, str]:
    return next(key for key, target in GRANT_TARGETS.items() if target.model is model)


def _grant_parts(payload: dict[str, Any]) -> tuple[GrantTarget, Any, Permission]:
    target = GRANT_TARGETS.get((payload.get("object", ""), payload.get("holder", "")))
    if target is None:
        raise SupervisionRefused("Unknown kind of grant.")
    obj = target.object_model._default_manager.filter(pk=_id(payload, "object_id")).first()
    permission = Permission.objects.filter(
        content_type__app_label="inbox",
        content_type__model=target.object_model._meta.model_name,
        codename=payload.get("permission"),
    ).first()
    if obj is None or permission is None:
        raise SupervisionRefused("The object or permission of this grant no longer exists.")
    return target, obj, permission


@_records_refusals
def grant_check(*, ctx: AccessContext, request: HttpRequest | None, payload: dict[str, Any]) -> None:
    """Check a grant before it is submitted (the admin's forms ask, to show the error)."""
    _grant_rules(ctx, request, payload)


def _grant_rules(ctx: AccessContext, request: HttpRequest | None, payload: dict[str, Any]) -> None:
    """Refuse a grant that would reach the actor (directly or through one of their teams)
    or that is on something outside their delegation. Who receives it is the delegated
    supervisor's call: giving someone access to one's own segment widens nothing else."""
    target, obj, _ = _grant_parts(payload)
    holder_id = _id(payload, "holder_id")
    is_user = target.holder_field == "user"
    if policy.widens_own_access(
        ctx, user_id=holder_id if is_user else None, group_id=None if is_user else holder_id
    ):
        _refuse(ctx, request, "Nobody grants access to themselves or to a team they are in.", grant=payload)
    if not policy.can_manage(ctx, obj):
        _refuse(ctx, request, f"You do not manage {obj}.", grant=payload)


def grant_needs_four_eyes(expires_at: datetime | None) -> bool:
    return expires_at is None or expires_at - timezone.now() > settings.GRANT_MAX_DURATION


def _grant_check(ctx: AccessContext, request: HttpRequest | None, change: ChangeRequest) -> None:
    _grant_rules(ctx, request, change.payload)


def _grant_apply(change: ChangeRequest) -> str | None:
    target, obj, permission = _grant_parts(change.payload)
    expires_at = change.payload.get("expires_at")
    target.model.objects.update_or_create(
        content_object=obj,
        permission=permission,
        **{f"{target.holder_field}_id": change.payload["holder_id"]},
        defaults={
            "expires_at": parse_datetime(expires_at) if expires_at else None,
            "reason": change.reason[:200],
            "granted_by": change.requested_by,
        },
    )
    return None


def _subject(change: ChangeRequest) -> User:
    if change.subject is None:
        raise SupervisionRefused("This change has no account to apply to.")
    return change.subject


def _no_extra_check(ctx: AccessContext, request: HttpRequest | None, change: ChangeRequest) -> None:
    return None


def _reset_password_apply(change: ChangeRequest) -> str | None:
    subject = _subject(change)
    subject.set_unusable_password()
    subject.save(update_fields=["password"])
    services.sessions_end_all(user=subject, reason=UserSession.EndReason.REVOKED)
    return enrollment_code_issue(user=subject, purpose=EnrollmentCode.Purpose.PASSWORD_RESET, change=change)


def _reset_factor_apply(change: ChangeRequest) -> str | None:
    subject = _subject(change)
    services.second_factor_reset(user=subject, by=change.decided_by or change.requested_by)
    return enrollment_code_issue(user=subject, purpose=EnrollmentCode.Purpose.FACTOR_RESET, change=change)


def _reactivate_apply(change: ChangeRequest) -> str | None:
    subject = _subject(change)
    subject.is_active = True
    subject.save(update_fields=["is_active"])
    return None


def _idp_group_mapping_check(ctx: AccessContext, request: HttpRequest | None, change: ChangeRequest) -> None:
    group = _group(change.payload)
    # Whoever holds the IdP (or a stolen admin session) must not mint administrators by group.
    if group.name == roles.ADMINISTRATOR:
        _refuse(ctx, request, "No identity provider group can map to Administrator.", group=group.pk)
    group_assignable_check(ctx, request, group)


def _idp_group_mapping_apply(change: ChangeRequest) -> str | None:
    mapping = IdpGroupMapping.objects.filter(pk=_id(change.payload, "mapping_id")).first()
    if mapping is None or mapping.group_id != _id(change.payload, "group_id"):
        raise SupervisionRefused("That group mapping no longer exists as requested.")
    mapping.active = True
    mapping.save(update_fields=["active"])
    return None


@dataclass(frozen=True)
class ChangeType:
    check: Callable[[AccessContext, HttpRequest | None, ChangeRequest], None]
    apply: Callable[[ChangeRequest], str | None]
    # Whether the actor must manage the subject's account. A grant's holder need not be
    # theirs: a delegated supervisor decides who works in their segment.
    subject_managed: bool = True


CHANGE_TYPES: dict[str, ChangeType] = {
    ChangeKind.CREATE_ACCOUNT: ChangeType(_create_account_check, _create_account_apply),
    ChangeKind.ADD_TO_GROUP: ChangeType(_add_to_group_check, _add_to_group_apply),
    ChangeKind.GRANT: ChangeType(_grant_check, _grant_apply, subject_managed=False),
    ChangeKind.RESET_PASSWORD: ChangeType(_no_extra_check, _reset_password_apply),
    ChangeKind.RESET_FACTOR: ChangeType(_no_extra_check, _reset_factor_apply),
    ChangeKind.REACTIVATE: ChangeType(_no_extra_check, _reactivate_apply),
    # A mapping has no subject: it reaches whoever is in the IdP's group.
    ChangeKind.IDP_GROUP_MAPPING: ChangeType(
        _idp_group_mapping_check, _idp_group_mapping_apply, subject_managed=False
    ),
}


def _actor_check(ctx: AccessContext, request: HttpRequest | None, change: ChangeRequest) -> None:
    change_type = CHANGE_TYPES[change.kind]
    subject = change.subject
    if subject is not None and subject.pk == ctx.user.pk:
        _refuse(ctx, request, "Nobody changes their own privileges.", subject=subject.pk)
    if subject is not None and change_type.subject_managed and not policy.can_manage(ctx, subject):
        _refuse(ctx, request, f"{subject.get_username()} is outside your delegation.", subject=subject.pk)
    change_type.check(ctx, request, change)


def _rule_requires_four_eyes(kind: str) -> bool:
    rule = ApprovalRule.objects.filter(kind=kind).first()
    return rule is None or rule.requires_second_approval


def _needs_four_eyes(change: ChangeRequest) -> bool:
    if change.kind == ChangeKind.GRANT:
        expires_at = change.payload.get("expires_at")
        if not grant_needs_four_eyes(parse_datetime(expires_at) if expires_at else None):
            return False
    about_supervisor = (
        change.subject is not None and change.subject.groups.filter(name__in=STAFF_ROLES).exists()
    )
    if about_supervisor and _rule_requires_four_eyes(ChangeKind.CHANGE_SUPERVISOR):
        return True
    return _rule_requires_four_eyes(change.kind)


# --- Requesting, approving, rejecting ------------------------------------------------------


@_records_refusals
def change_request(
    *,
    ctx: AccessContext,
    request: HttpRequest | None,
    kind: ChangeKind,
    summary: str,
    reason: str,
    subject: User | None = None,
    payload: dict[str, Any] | None = None,
) -> Outcome:
    """Ask for a privilege change. It is applied at once where no second approval is
    required, and otherwise waits, expiring if nobody approves it in time."""
    reason = reason.strip()
    if not reason:
        raise SupervisionRefused("Say why: a reason is required for every privilege change.")
    change = ChangeRequest(
        kind=kind,
        requested_by=ctx.user,
        subject=subject,
        payload=payload or {},
        summary=summary[:300],
        reason=reason[:300],
        expires_at=timezone.now() + settings.CHANGE_REQUEST_TTL,
    )
    with transaction.atomic():
        _actor_check(ctx, request, change)
        change.payload.update(_scope_keys(change))
        change.save()
        security_event_record(
            kind=Kind.CHANGE_REQUESTED, request=request, user=ctx.user, detail=_trail(change)
        )
        if _needs_four_eyes(change):
            return Outcome(change)
        change.decision_note = "Applied at once: this change needs no second approval."
        return _apply(change, by=ctx.user, request=request)


@_records_refusals
def change_approve(*, ctx: AccessContext, request: HttpRequest | None, change_id: int) -> Outcome:
    """A second supervisor approves: not the requester, not the subject, and able to make
    the change themselves."""
    change_requests_expire()
    with transaction.atomic():
        change = (
            ChangeRequest.objects.select_for_update(of=("self",)).select_related("subject").get(pk=change_id)
        )
        _decision_check(ctx, request, change)
        if change.requested_by_id == ctx.user.pk:
            _refuse(ctx, request, "A change needs a second person: you asked for this one.", change=change.pk)
        _actor_check(ctx, request, change)
        return _apply(change, by=ctx.user, request=request)


@_records_refusals
def change_reject(*, ctx: AccessContext, request: HttpRequest | None, change_id: int, note: str = "") -> None:
    """Reject (or, for the requester, withdraw) a pending change."""
    change_requests_expire()
    with transaction.atomic():
        change = (
            ChangeRequest.objects.select_for_update(of=("self",)).select_related("subject").get(pk=change_id)
        )
        _decision_check(ctx, request, change)
        if change.requested_by_id != ctx.user.pk:
            _actor_check(ctx, request, change)
        change.state = ChangeRequest.State.REJECTED
        change.decided_by = ctx.user
        change.decided_at = timezone.now()
        change.decision_note = note[:300]
        change.save(update_fields=["state", "decided_by", "decided_at", "decision_note"])
        security_event_record(
            kind=Kind.CHANGE_REJECTED, request=request, user=ctx.user, detail=_trail(change)
        )


def _decision_check(ctx: AccessContext, request: HttpRequest | None, change: ChangeRequest) -> None:
    if not change.is_open:
        state = change.get_state_display() if change.state != ChangeRequest.State.PENDING else "Expired"
        raise SupervisionRefused(f"This change is {state.lower()}.", change=change.pk)
    if change.subject_id == ctx.user.pk:
        _refuse(ctx, request, "Nobody decides a change about themselves.", change=change.pk)


def _apply(change: ChangeRequest, *, by: User, request: HttpRequest | None) -> Outcome:
    change.decided_by = by
    change.decided_at = timezone.now()
    code = CHANGE_TYPES[change.kind].apply(change)
    change.state = ChangeRequest.State.APPLIED
    change.save()
    if change.subject_id is not None:
        sockets_recheck(user_ids=[change.subject_id])
    security_event_record(kind=Kind.CHANGE_APPLIED, request=request, user=by, detail=_trail(change))
    return Outcome(change, code)


def _scope_keys(change: ChangeRequest) -> dict[str, int | None]:
    """The inbox or team a change is about, so the right supervisors find it in their queue."""
    payload = change.payload
    if change.kind == ChangeKind.GRANT:
        _, obj, _ = _grant_parts(payload)
        if isinstance(obj, Team):
            return {"scope_team": obj.pk}
        return {"scope_inbox": obj.pk if isinstance(obj, Inbox) else obj.inbox_id}
    group_ids = [payload["group_id"]] if "group_id" in payload else payload.get("group_ids", [])
    team = Team.objects.filter(pk__in=group_ids).order_by("pk").first()
    return {"scope_team": team.pk} if team is not None else {}


def _trail(change: ChangeRequest) -> dict[str, Any]:
    return {
        "change": change.pk,
        "kind": change.kind,
        "subject": change.subject_id,
        "requested_by": change.requested_by_id,
        "decided_by": change.decided_by_id,
        "payload": change.payload,
        "reason": change.reason,
    }


def change_requests_expire() -> int:
    """Close pending changes nobody approved in time."""
    return ChangeRequest.objects.filter(
        state=ChangeRequest.State.PENDING, expires_at__lte=timezone.now()
    ).update(state=ChangeRequest.State.EXPIRED)


def change_requests_in_scope(ctx: AccessContext) -> QuerySet[ChangeRequest]:
    """The changes a supervisor may see: their own, and those about accounts, inboxes and
    teams inside their delegation."""
    changes = ChangeRequest.objects.select_related("requested_by", "subject", "decided_by")
    if policy.is_administrator(ctx.user):
        return changes
    managed = policy.managed_users(ctx).values("pk")
    return changes.filter(_scope_filter(ctx) | Q(requested_by=ctx.user) | Q(subject__in=managed)).exclude(
        subject=ctx.user
    )


def _scope_filter(ctx: AccessContext) -> Q:
    inbox_ids = list(policy.managed_inboxes(ctx).values_list("pk", flat=True))
    team_ids = list(policy.managed_teams(ctx).values_list("pk", flat=True))
    return Q(payload__scope_inbox__in=inbox_ids) | Q(payload__scope_team__in=team_ids)


# --- The dashboard ---------------------------------------------------------------------------

GRANT_MODELS = (
    (InboxUserObjectPermission, "content_object__in", policy.managed_inboxes),
    (InboxGroupObjectPermission, "content_object__in", policy.managed_inboxes),
    (ConversationUserObjectPermission, "content_object__inbox__in", policy.managed_inboxes),
    (ConversationGroupObjectPermission, "content_object__inbox__in", policy.managed_inboxes),
    (TeamUserObjectPermission, "content_object__in", policy.managed_teams),
    (TeamGroupObjectPermission, "content_object__in", policy.managed_teams),
)
GRANTS_ENDING_WITHIN = timedelta(days=7)


@dataclass(frozen=True)
class GrantEnding:
    holder: str
    action: str
    target: str
    expires_at: datetime
    url_name: str  # the admin list the grant is changed in
    pk: int


@dataclass(frozen=True)
class Overview:
    """What waits for a supervisor, inside their delegation: the admin's first page."""

    open_alerts: int
    high_alerts: int
    changes_waiting: int
    devices_waiting: int
    grants_ending: list[GrantEnding]


def grant_holder_field(model: type[Any]) -> str:
    """Which field of a grant model holds its holder: a person's grants name a user, a
    team's a group."""
    return "user" if "user" in {field.name for field in model._meta.fields} else "group"


def _grants_ending(ctx: AccessContext, limit: int) -> list[GrantEnding]:
    now = timezone.now()
    found: list[GrantEnding] = []
    for model, path, scope in GRANT_MODELS:
        holder = grant_holder_field(model)
        rows = (
            model.objects.filter(
                **{path: scope(ctx)}, expires_at__gt=now, expires_at__lte=now + GRANTS_ENDING_WITHIN
            )
            .select_related(holder, "permission", "content_object")
            .order_by("expires_at")[:limit]
        )
        found += [
            GrantEnding(
                holder=str(getattr(grant, holder)),
                action=ACTION_LABELS.get(grant.permission.codename, grant.permission.name),
                target=str(grant.content_object),
                expires_at=cast(datetime, grant.expires_at),  # filtered on it above
                url_name=f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
                pk=grant.pk,
            )
            for grant in rows
        ]
    return sorted(found, key=lambda grant: grant.expires_at)[:limit]


def supervision_overview(ctx: AccessContext, *, grants: int = 8) -> Overview:
    """Counts through the same scopes as the lists they link to, so a number never names
    more than the list behind it shows; the next grants to end, soonest first."""
    open_alerts = alerts_visible(ctx).filter(status=Alert.Status.OPEN)
    devices = BrowserDevice.objects.filter(approval=BrowserDevice.Approval.PENDING, revoked_at__isnull=True)
    if not policy.is_administrator(ctx.user):
        devices = devices.filter(user__in=policy.managed_users(ctx))
    return Overview(
        open_alerts=open_alerts.count(),
        high_alerts=open_alerts.filter(severity__gte=AlertSeverity.HIGH).count(),
        changes_waiting=change_requests_in_scope(ctx).filter(state=ChangeRequest.State.PENDING).count(),
        devices_waiting=devices.count(),
        grants_ending=_grants_ending(ctx, grants),
    )


# --- Enrollment codes -----------------------------------------------------------------------


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def enrollment_code_issue(
    *, user: User, purpose: EnrollmentCode.Purpose, change: ChangeRequest | None
) -> str:
    """A fresh single-use code for the user; any earlier unused one stops working."""
    EnrollmentCode.objects.filter(user=user, used_at__isnull=True).update(used_at=timezone.now())
    code = secrets.token_urlsafe(24)
    EnrollmentCode.objects.create(
        user=user,
        purpose=purpose,
        code_hash=_code_hash(code),
        change_request=change if change is not None and change.pk else None,
        expires_at=timezone.now() + settings.ENROLLMENT_CODE_TTL,
    )
    security_event_record(kind=Kind.ENROLLMENT_CODE_ISSUED, user=user, detail={"purpose": purpose})
    return code


class EnrollmentCodeRefused(Exception):
    pass


INVALID_CODE = "This code is not valid for this account, was used already, or has expired."


def enrollment_code_redeem(
    *, request: HttpRequest, username: str, code: str, new_password: str | None
) -> EnrollmentCode:
    """Take a code for a user: single use, expiring, bound to that account. Refusals are
    all alike, so the page does not tell which part was wrong. A code that sets a password
    is spent only once the new password passes the validators."""
    try:
        return _enrollment_code_take(request=request, username=username, code=code, new_password=new_password)
    except EnrollmentCodeRefused:
        security_event_record(
            kind=Kind.ENROLLMENT_CODE_REFUSED,
            request=request,
            severity=Severity.WARNING,
            username_attempted=username,
        )
        raise


def _enrollment_code_take(
    *, request: HttpRequest, username: str, code: str, new_password: str | None
) -> EnrollmentCode:
    with transaction.atomic():
        enrollment = (
            EnrollmentCode.objects.select_for_update()
            .select_related("user")
            .filter(
                code_hash=_code_hash(code.strip()),
                user__username=username,
                used_at__isnull=True,
                expires_at__gt=timezone.now(),
                user__is_active=True,
                user__locked_at__isnull=True,
            )
            .first()
        )
        if enrollment is None:
            raise EnrollmentCodeRefused(INVALID_CODE)
        user = enrollment.user
        if enrollment.sets_password:
            if not new_password:
                raise EnrollmentCodeRefused("Choose a password for your account.")
            try:
                validate_password(new_password, user)
            except ValidationError as invalid:
                raise EnrollmentCodeRefused(" ".join(invalid.messages)) from None
            user.set_password(new_password)
            user.save(update_fields=["password"])
        enrollment.used_at = timezone.now()
        enrollment.save(update_fields=["used_at"])
        security_event_record(
            kind=Kind.ENROLLMENT_CODE_USED, request=request, user=user, detail={"purpose": enrollment.purpose}
        )
    return enrollment
