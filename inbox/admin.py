"""Supervisors' admin for segments, teams, conversations and the grants between them.

Conversations and contacts are listed through the policy: a supervisor sees the content of
the inboxes they are granted, like anyone else. What they *manage* — inboxes, teams, grants,
configuration — is what the policy says they are delegated (`manage` grants). Grants are
edited inline with their expiry and reason, and saved through the supervision service: no
grant to oneself, none beyond one's delegation, four eyes for long or open-ended ones.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.db.models import ForeignKey, Q, QuerySet
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts import roles, supervision
from accounts.models import ChangeKind, User
from audit.selectors import object_access_history, rule_impact
from audit.services import Kind, Severity, security_event_record
from inbox import policy
from inbox.models import (
    CannedResponse,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationGroupObjectPermission,
    ConversationUserObjectPermission,
    DlpFinding,
    DlpKind,
    DlpRule,
    Inbox,
    InboxGroupObjectPermission,
    InboxUserObjectPermission,
    Invoice,
    Label,
    Module,
    PolicyRule,
    RuleAction,
    Team,
    TeamGroupObjectPermission,
    TeamUserObjectPermission,
)
from inbox.policy import AccessContext, Action


def _ctx(request: HttpRequest) -> AccessContext:
    return AccessContext.from_request(request)


def manages(request: HttpRequest, obj: Any) -> bool:
    """`policy.can_manage`, asked once per object per request: an admin page asks the same
    question for every inline and button it draws."""
    answers: dict[tuple[str, int], bool] = request.__dict__.setdefault("_portcullis_manages", {})
    key = (obj._meta.label_lower, obj.pk)
    if key not in answers:
        answers[key] = policy.can_manage(_ctx(request), obj)
    return answers[key]


def bind_request(form: type[Any], request: HttpRequest) -> type[Any]:
    """The admin's form class, knowing the request: its choices come from the policy."""
    return type(form.__name__, (form,), {"request": request})


def _usernames(users: QuerySet[User]) -> str:
    return format_html_join(", ", "{}", ((user.get_username(),) for user in users)) or "Nobody"


def administrator_only(request: HttpRequest) -> bool:
    """Asked by most models' permission checks, so about thirty times for the admin's
    navigation alone: answered once per request."""
    answers = request.__dict__
    if "_portcullis_administrator" not in answers:
        user = request.user
        answers["_portcullis_administrator"] = isinstance(user, User) and policy.is_administrator(user)
    return bool(answers["_portcullis_administrator"])


class InboxScopedAdminMixin:
    """For rows that belong to an inbox (raw mail, webhook deliveries, call records): the
    admin lists only those of inboxes the policy lets the viewer see, as for conversations.
    A Django model permission opens the page; it does not open every segment's data."""

    inbox_path = "inbox"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        inboxes = policy.visible_inboxes(_ctx(request))
        return super().get_queryset(request).filter(**{f"{self.inbox_path}__in": inboxes})  # type: ignore[misc]


class ManagedInboxAdminMixin:
    """For an inbox's configuration (its channel, its canned responses): listed, edited and
    created only for inboxes the viewer manages; the inbox picker offers no other."""

    inbox_path = "inbox"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        managed = policy.managed_inboxes(_ctx(request))
        return super().get_queryset(request).filter(**{f"{self.inbox_path}__in": managed})  # type: ignore[misc]

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "inbox":
            kwargs["queryset"] = policy.managed_inboxes(_ctx(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


class ManagedUsersAdminMixin:
    """Rows that belong to an account (sessions, devices, security events): only those of
    the viewer and of the accounts they manage."""

    user_path = "user"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        ctx = _ctx(request)
        rows = super().get_queryset(request)  # type: ignore[misc]
        if policy.is_administrator(ctx.user):
            return rows
        return rows.filter(
            Q(**{f"{self.user_path}__in": policy.managed_users(ctx)}) | Q(**{self.user_path: ctx.user})
        )

    def managed_rows(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        """The selected rows an action may act on: those of accounts the viewer manages
        (`policy.can_manage`, decided and recorded per row), never the viewer's own."""
        ctx = _ctx(request)
        return [
            row
            for row in queryset.select_related(self.user_path)
            if getattr(row, self.user_path).pk != ctx.user.pk
            and policy.can_manage(ctx, getattr(row, self.user_path))
        ]


class GrantStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Live"), ("expired", "Expired"), ("temporary", "Time-bound")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "live":
            return queryset.exclude(expires_at__lte=now)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "temporary":
            return queryset.filter(expires_at__gt=now)
        return queryset


GRANT_FIELDS = ("permission", "duration", "expires_at", "reason", "granted_by", "granted_at")
# The product's actions, not Django's add/change/delete permissions.
GRANTABLE_CODENAMES = {
    "inbox": sorted(policy.INBOX_CODENAMES.values()),
    "conversation": sorted(policy.CONVERSATION_CODENAMES.values()),
    "team": [policy.MANAGE_TEAM_CODENAME],
}
# Presets for how long a grant lasts; a date of one's own goes in "Ends at".
DURATION_PRESETS = {
    "1h": ("1 hour", timedelta(hours=1)),
    "8h": ("8 hours (a shift)", timedelta(hours=8)),
    "1d": ("1 day", timedelta(days=1)),
    "7d": ("1 week", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
}


class ActionChoiceField(forms.ModelChoiceField[Permission]):
    def label_from_instance(self, obj: Any) -> str:
        return supervision.ACTION_LABELS.get(obj.codename, obj.name)


class GrantForm(forms.ModelForm[Any]):
    """One grant row: the action in the product's words, a duration preset or an end date
    in the named time zone, and the reason."""

    duration = forms.ChoiceField(
        choices=[("", "Until the date given")]
        + [(key, label) for key, (label, _) in DURATION_PRESETS.items()],
        required=False,
        label="Lasts",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "expires_at" in self.fields:
            zone = timezone.get_current_timezone_name()
            self.fields["expires_at"].label = f"Ends at ({zone})"
            self.fields["expires_at"].help_text = (
                f"Empty: no end. Longer than {settings.GRANT_MAX_DURATION.days} days or no end "
                "waits for a second supervisor."
            )
        if "reason" in self.fields:
            self.fields["reason"].widget = forms.TextInput(attrs={"size": 28})

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        preset = cleaned.get("duration")
        if preset:
            if cleaned.get("expires_at") and "expires_at" in self.changed_data:
                self.add_error("duration", "Pick a duration or an end date, not both.")
            else:
                cleaned["expires_at"] = timezone.now() + DURATION_PRESETS[preset][1]
        return cleaned


def grant_payload(grant: Any) -> dict[str, Any]:
    object_kind, holder_kind = supervision.grant_target(type(grant))
    return {
        "object": object_kind,
        "object_id": grant.content_object_id,
        "holder": holder_kind,
        "holder_id": grant.user_id if holder_kind == "user" else grant.group_id,
        "permission": grant.permission.codename,
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
    }


class GrantFormSet(forms.BaseInlineFormSet[Any, Any, Any]):
    """Each new or widened grant is checked against the supervisor's delegation before
    anything is saved: no grant to oneself or one's own team, none beyond one's scope."""

    request: HttpRequest

    def add_fields(self, form: Any, index: int | None) -> None:
        super().add_fields(form, index)
        if form.instance.pk is not None:
            # An existing grant's holder and action stay fixed (end it and add a new one):
            # shown, not offered, so a posted change is ignored. Its holder may be one the
            # picker for new grants leaves out (the supervisor, or their own team).
            name = supervision.grant_holder_field(type(form.instance))
            holder = form.fields[name]
            holder.queryset = holder.queryset.model.objects.filter(pk=getattr(form.instance, f"{name}_id"))
            for fixed in (name, "permission"):
                form.fields[fixed].disabled = True
        # A tabular row's column heading is no label to a screen reader: each control
        # carries its column's name.
        for field in form.fields.values():
            name = str(field.label or "")
            widget = getattr(field.widget, "widget", field.widget)  # inside the related-object wrapper
            widget.attrs["aria-label"] = name
            for part, subwidget in zip(("date", "time"), getattr(widget, "widgets", ()), strict=False):
                subwidget.attrs["aria-label"] = f"{name}, {part}"

    def clean(self) -> None:
        super().clean()
        ctx = _ctx(self.request)
        for form in self.forms:
            if form.errors or not form.has_changed() or form.cleaned_data.get("DELETE"):
                continue
            grant = form.save(commit=False)
            try:
                supervision.grant_check(ctx=ctx, request=self.request, payload=grant_payload(grant))
            except supervision.SupervisionRefused as refused:
                form.add_error(None, str(refused))
            if not (grant.reason or "").strip():
                form.add_error("reason", "Say why this access is given.")


class GrantInline(admin.TabularInline[Any, Any]):
    """Inline grants with the product's actions. Shown to whoever may see the object;
    editable only by those who manage it."""

    extra = 0
    form = GrantForm
    formset = GrantFormSet
    readonly_fields = ("granted_by", "granted_at")
    permission_model = ""

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        return bind_request(super().get_formset(request, obj, **kwargs), request)

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        ctx = _ctx(request)
        if db_field.name == "permission":
            kwargs["queryset"] = Permission.objects.filter(
                content_type__app_label="inbox",
                content_type__model=self.permission_model,
                codename__in=GRANTABLE_CODENAMES[self.permission_model],
            )
            kwargs["form_class"] = ActionChoiceField
            kwargs["label"] = "May"
        elif db_field.name == "user":
            kwargs["queryset"] = User.objects.filter(is_active=True).exclude(pk=ctx.user.pk)
        elif db_field.name == "group":
            kwargs["queryset"] = Team.objects.exclude(pk__in=ctx.user.groups.values("pk"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _editable(self, request: HttpRequest, obj: Any) -> bool:
        return obj is not None and manages(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request, obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request, obj) and super().has_delete_permission(request, obj)


class InboxUserGrantInline(GrantInline):
    model = InboxUserObjectPermission
    fields = ("user", *GRANT_FIELDS)
    permission_model = "inbox"
    verbose_name = "grant to a person"
    verbose_name_plural = "grants to people"


class InboxTeamGrantInline(GrantInline):
    model = InboxGroupObjectPermission
    fields = ("group", *GRANT_FIELDS)
    permission_model = "inbox"
    verbose_name = "grant to a team"
    verbose_name_plural = "grants to teams"


class ConversationUserGrantInline(GrantInline):
    model = ConversationUserObjectPermission
    fields = ("user", *GRANT_FIELDS)
    permission_model = "conversation"
    verbose_name = "grant to a person (escalation)"
    verbose_name_plural = "grants to people (escalations)"


class ConversationTeamGrantInline(GrantInline):
    model = ConversationGroupObjectPermission
    fields = ("group", *GRANT_FIELDS)
    permission_model = "conversation"
    verbose_name = "grant to a team"
    verbose_name_plural = "grants to teams"


class TeamUserGrantInline(GrantInline):
    model = TeamUserObjectPermission
    fields = ("user", *GRANT_FIELDS)
    permission_model = "team"
    verbose_name = "supervisor of this team"
    verbose_name_plural = "supervisors of this team"


class GrantingAdminMixin:
    """Grants are saved through the supervision service: one within the maximum duration
    applies at once, a longer or open-ended one waits for a second supervisor. Ending a
    grant only narrows access and applies at once."""

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if not isinstance(formset, GrantFormSet):
            super().save_formset(request, form, formset, change)  # type: ignore[misc]
            return
        for grant in formset.save(commit=False):
            change_submit(
                request,
                kind=ChangeKind.GRANT,
                summary=f"Grant {grant.permission.codename} on {grant.content_object} to "
                f"{getattr(grant, 'user', None) or getattr(grant, 'group', None)}",
                reason=grant.reason,
                subject=getattr(grant, "user", None),
                payload=grant_payload(grant),
            )
        for grant in formset.deleted_objects:
            grant.delete()


@admin.register(Inbox)
class InboxAdmin(GrantingAdminMixin, admin.ModelAdmin[Inbox]):
    list_display = ("name", "channel_kind", "module", "created_at")
    list_filter = ("channel_kind", "module")
    search_fields = ("name",)
    readonly_fields = ("who_can_see",)
    inlines = (InboxTeamGrantInline, InboxUserGrantInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Inbox]:
        return policy.managed_inboxes(_ctx(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A new segment has no supervisor yet: administrators create and delegate it.
        return administrator_only(request) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Inbox | None = None) -> bool:
        return administrator_only(request) and super().has_delete_permission(request, obj)

    @admin.display(description="Who can see it now")
    def who_can_see(self, obj: Inbox) -> str:
        if obj.pk is None:
            return "—"
        return _usernames(policy.users_with_inbox_grant(obj, Action.VIEW))


class TeamForm(forms.ModelForm[Team]):
    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.none(),
        required=False,
        widget=FilteredSelectMultiple("members", is_stacked=False),
    )
    change_reason = forms.CharField(
        label="Reason for new members",
        max_length=300,
        required=False,
        help_text="Adding someone to a team is a privilege change: say why.",
    )

    class Meta:
        model = Team
        fields = ("name", "description")

    request: HttpRequest

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.user_set.all() if self.instance.pk else User.objects.none()
        members = self.fields["members"]
        assert isinstance(members, forms.ModelMultipleChoiceField)  # noqa: S101  # declared above
        members.queryset = (policy.managed_users(_ctx(self.request)) | current).distinct()
        if self.instance.pk:
            members.initial = current

    def added_members(self) -> list[User]:
        current = set(self.instance.user_set.values_list("pk", flat=True)) if self.instance.pk else set()
        return [user for user in self.cleaned_data["members"] if user.pk not in current]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "members" in cleaned and self.added_members() and not cleaned.get("change_reason", "").strip():
            self.add_error("change_reason", "Say why these people join the team.")
        return cleaned


@admin.register(Team)
class TeamAdmin(GrantingAdminMixin, admin.ModelAdmin[Team]):
    form = TeamForm
    list_display = ("name", "description", "member_count")
    search_fields = ("name",)
    inlines = (TeamUserGrantInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return policy.managed_teams(_ctx(request))

    def get_form(
        self, request: HttpRequest, obj: Team | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return administrator_only(request) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Team | None = None) -> bool:
        return administrator_only(request) and super().has_delete_permission(request, obj)

    @admin.display(description="Members")
    def member_count(self, obj: Team) -> int:
        return obj.user_set.count()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        team: Team = form.instance
        kept = {user.pk for user in form.cleaned_data["members"]}
        # Leaving a team only narrows access: at once.
        team.user_set.remove(*team.user_set.exclude(pk__in=kept))
        for user in form.added_members():
            submit_membership(request, user=user, group=team, reason=form.cleaned_data["change_reason"])


def change_submit(request: HttpRequest, **change: Any) -> supervision.Outcome | None:
    """Ask for a privilege change from an admin page, and tell the supervisor what became
    of it: applied, waiting for a second supervisor, or refused and why."""
    summary = change["summary"]
    try:
        outcome = supervision.change_request(ctx=_ctx(request), request=request, **change)
    except supervision.SupervisionRefused as refused:
        messages.error(request, f"{summary}: not done. {refused}")
        return None
    if outcome.applied:
        messages.success(request, f"{summary}: done.")
    else:
        messages.warning(
            request, f"{summary}: change request #{outcome.change.pk} waits for a second supervisor."
        )
    return outcome


def submit_membership(request: HttpRequest, *, user: User, group: Any, reason: str) -> None:
    change_submit(
        request,
        kind=ChangeKind.ADD_TO_GROUP,
        summary=f"Add {user.get_username()} to {group.name}",
        reason=reason,
        subject=user,
        payload={"group_id": group.pk},
    )


@admin.register(Conversation)
class ConversationAdmin(GrantingAdminMixin, admin.ModelAdmin[Conversation]):
    list_display = ("__str__", "inbox", "contact", "status", "assignee", "last_activity_at")
    list_filter = ("status", "inbox", "priority")
    search_fields = ("subject", "contact__name")
    list_select_related = ("inbox", "contact", "assignee")
    fields = (
        "inbox",
        "contact",
        "subject",
        "status",
        "priority",
        "assignee",
        "team",
        "labels",
        "last_activity_at",
        "who_can_see",
        "who_accessed",
    )
    readonly_fields = (
        "inbox",
        "contact",
        "subject",
        "status",
        "assignee",
        "last_activity_at",
        "who_can_see",
        "who_accessed",
    )
    inlines = (ConversationUserGrantInline, ConversationTeamGrantInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        # Supervisors see conversations through the same policy as agents.
        return policy.visible_conversations(_ctx(request))

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        # Through the loader, so the admin's reads are decided and recorded like any other.
        try:
            return policy.access_conversation(_ctx(request), object_id)
        except Http404:
            return None

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "team":
            kwargs["queryset"] = policy.managed_teams(_ctx(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Conversation, form: Any, change: bool) -> None:
        if not policy.can(_ctx(request), Action.REPLY, obj):
            raise PermissionDenied("You may see this conversation but not change it.")
        super().save_model(request, obj, form, change)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations come from channels

    @admin.display(description="Who can see it now")
    def who_can_see(self, obj: Conversation) -> str:
        return _usernames(policy.users_seeing(Conversation.objects.filter(pk=obj.pk)))

    @admin.display(description="Who accessed this conversation")
    def who_accessed(self, obj: Conversation) -> str:
        # Whoever may open this page supervises the conversation, and who read it is part
        # of what it holds: the list is not narrowed to the accounts the viewer manages.
        events = object_access_history(object_type=obj._meta.label_lower, object_id=obj.pk)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    event.username or f"#{event.user_id or '—'}",  # type: ignore[attr-defined]  # annotated
                    event.action,
                    "allowed" if event.allowed else "denied",
                    f"{event.created_at:%Y-%m-%d %H:%M:%S}",
                )
                for event in events
            ),
        )
        if not rows:
            return "Nobody yet"
        log = reverse("admin:audit_accessevent_changelist")
        return format_html(
            "<table><tr><th>User</th><th>Action</th><th>Decision</th><th>Time (UTC)</th></tr>{}</table>"
            '<a href="{}?object_type={}&amp;object_id={}">Full access log</a>',
            rows,
            log,
            obj._meta.label_lower,
            obj.pk,
        )


class ContactIdentityInline(admin.TabularInline[ContactIdentity, Contact]):
    """Where replies go: changing a handle would redirect a customer's mail, so only
    administrators edit identities here."""

    model = ContactIdentity
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return administrator_only(request) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return administrator_only(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return administrator_only(request) and super().has_delete_permission(request, obj)


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin[Contact]):
    list_display = ("__str__", "created_at", "merged_into")
    search_fields = ("name", "identities__handle")
    inlines = (ContactIdentityInline,)
    raw_id_fields = ("merged_into",)
    readonly_fields = ("who_can_see", "who_accessed")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Contact]:
        return policy.visible_contacts(_ctx(request))

    @admin.display(description="Who can see it now")
    def who_can_see(self, obj: Contact) -> str:
        # Through any of the contact's conversations, as the policy opens contacts.
        return _usernames(policy.users_seeing(Conversation.objects.filter(contact=obj)))

    @admin.display(description="Who accessed it")
    def who_accessed(self, obj: Contact) -> str:
        # The history is its own page: it is long, paged, and looking at it is an access.
        if obj.pk is None:
            return "—"  # the add form: nothing accessed yet
        return format_html(
            '<a href="{}">Reads of this contact and its conversations</a>',
            reverse("admin:audit_contact_accesses", args=[obj.pk]),
        )


class GrantActionFilter(admin.SimpleListFilter):
    """The grantable actions of the listed kind, in the product's words (Django's own
    filter would list every permission, one query for each's content type)."""

    title = "may"
    parameter_name = "may"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (codename, supervision.ACTION_LABELS[codename])
            for codename in GRANTABLE_CODENAMES[model_admin.permission_model]
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(permission__codename=self.value()) if self.value() else queryset


class GrantAdmin(admin.ModelAdmin[Any]):
    """All grants of one kind in one list: what expires when, and why it was given. Only
    grants on what the viewer manages are listed.

    Grants are created on their inbox's, conversation's or team's page; here only the
    expiry and reason change, through the same checks as there.
    """

    list_display = ("holder", "action", "content_object", "expires_at", "reason", "granted_by", "granted_at")
    list_filter = (GrantStateFilter, GrantActionFilter)
    form = GrantForm
    fields = (
        "holder",
        "permission",
        "content_object",
        "duration",
        "expires_at",
        "reason",
        "granted_by",
        "granted_at",
    )
    readonly_fields = ("holder", "permission", "content_object", "granted_by", "granted_at")
    search_fields = ("reason",)
    scope_path = "content_object__in"
    scope: Any = staticmethod(policy.managed_inboxes)
    permission_model = "inbox"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        holder = supervision.grant_holder_field(self.model)
        rows = (
            super().get_queryset(request).select_related(holder, "content_object", "permission", "granted_by")
        )
        return rows.filter(**{self.scope_path: self.scope(_ctx(request))})

    @admin.display(description="Granted to")
    def holder(self, obj: Any) -> str:
        return str(getattr(obj, supervision.grant_holder_field(self.model)))

    @admin.display(description="May", ordering="permission__codename")
    def action(self, obj: Any) -> str:
        return supervision.ACTION_LABELS.get(obj.permission.codename, obj.permission.name)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        change_submit(
            request,
            kind=ChangeKind.GRANT,
            summary=f"Change {obj}",
            reason=obj.reason,
            subject=getattr(obj, "user", None),
            payload=grant_payload(obj),
        )


class ConversationGrantAdmin(GrantAdmin):
    scope_path = "content_object__inbox__in"
    permission_model = "conversation"


class TeamGrantAdmin(GrantAdmin):
    scope: Any = staticmethod(policy.managed_teams)
    permission_model = "team"


admin.site.register(InboxUserObjectPermission, GrantAdmin)
admin.site.register(InboxGroupObjectPermission, GrantAdmin)
admin.site.register(ConversationUserObjectPermission, ConversationGrantAdmin)
admin.site.register(ConversationGroupObjectPermission, ConversationGrantAdmin)
admin.site.register(TeamUserObjectPermission, TeamGrantAdmin)
admin.site.register(TeamGroupObjectPermission, TeamGrantAdmin)
admin.site.register(Label)


@admin.register(CannedResponse)
class CannedResponseAdmin(ManagedInboxAdminMixin, admin.ModelAdmin[CannedResponse]):
    """Inbox-bound responses for that inbox's supervisors; the ones offered everywhere are
    for administrators to change."""

    list_display = ("shortcut", "inbox")

    def get_queryset(self, request: HttpRequest) -> QuerySet[CannedResponse]:
        managed = policy.managed_inboxes(_ctx(request))
        return CannedResponse.objects.filter(Q(inbox__in=managed) | Q(inbox__isnull=True))

    def has_change_permission(self, request: HttpRequest, obj: CannedResponse | None = None) -> bool:
        if obj is not None and obj.inbox_id is None and not administrator_only(request):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: CannedResponse | None = None) -> bool:
        return self.has_change_permission(request, obj) and super().has_delete_permission(request, obj)


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin[Invoice]):
    """Billing data: for the Billing role, and only of contacts the viewer can see."""

    list_display = ("number", "contact", "amount_cents", "currency", "status", "issued_at")
    list_select_related = ("contact",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invoice]:
        ctx = _ctx(request)
        if not ctx.user.has_perm(policy.BILLING_PERMISSION):
            return Invoice.objects.none()
        return Invoice.objects.filter(contact__in=policy.visible_contacts(ctx))


# --- Policy rules ---------------------------------------------------------------------------

IMPACT_WINDOWS = (
    ("24 hours", timedelta(days=1)),
    ("7 days", timedelta(days=7)),
    ("30 days", timedelta(days=30)),
)
WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]


def _cidr_lines(value: str) -> str:
    for line in value.splitlines():
        if line.strip():
            try:
                ipaddress.ip_network(line.strip(), strict=False)
            except ValueError:
                raise forms.ValidationError(f"{line.strip()!r} is not a network in CIDR notation.") from None
    return value


class PolicyRuleForm(forms.ModelForm[PolicyRule]):
    modules = forms.MultipleChoiceField(
        choices=Module.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    actions = forms.MultipleChoiceField(
        choices=RuleAction.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Empty: every action.",
    )
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Empty: every day.",
    )
    confirm_enforce = forms.BooleanField(
        required=False, label="I have read the impact and want to enforce this rule now"
    )

    class Meta:
        model = PolicyRule
        fields = [
            "name",
            "description",
            "priority",
            "mode",
            "effect",
            "groups",
            "inboxes",
            "modules",
            "actions",
            "window_start",
            "window_end",
            "time_zone",
            "weekdays",
            "allowed_networks",
            "blocked_networks",
            "max_session_age_minutes",
            "required_authenticator",
            "min_device_trust",
            "max_risk_score",
        ]
        widgets = {
            "window_start": forms.TimeInput(format="%H:%M"),
            "window_end": forms.TimeInput(format="%H:%M"),
        }

    request: HttpRequest

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A rule shown read-only (someone else's) has no fields to narrow.
        if not administrator_only(self.request) and "inboxes" in self.fields:
            # A supervisor's rules are for the inboxes they manage, named one by one.
            inboxes = self.fields["inboxes"]
            assert isinstance(inboxes, forms.ModelMultipleChoiceField)  # noqa: S101  # a relation
            inboxes.queryset = policy.managed_inboxes(_ctx(self.request))
            inboxes.required = True
            inboxes.help_text = "The inboxes you manage that this rule narrows."
            self.fields["modules"].disabled = True

    def clean_time_zone(self) -> str:
        zone: str = self.cleaned_data["time_zone"]
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise forms.ValidationError(f"{zone!r} is not a time zone (e.g. Europe/Berlin).") from None
        return zone

    def clean_allowed_networks(self) -> str:
        return _cidr_lines(self.cleaned_data["allowed_networks"])

    def clean_blocked_networks(self) -> str:
        return _cidr_lines(self.cleaned_data["blocked_networks"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("window_start"), cleaned.get("window_end")
        if (start is None) != (end is None):
            self.add_error("window_end", "A time window needs both a start and an end.")
        elif start is not None and start == end:
            self.add_error("window_end", "The window is empty: its start and end are the same.")
        if cleaned.get("weekdays") and start is None:
            self.add_error("weekdays", "Weekdays belong to a time window: set its start and end too.")
        if self._locks_out_administrators(cleaned):
            raise forms.ValidationError(
                "This rule would deny every administrator the supervision admin. Narrow it to "
                "inboxes, modules, actions or roles that leave an administrator a way in."
            )
        if self._newly_enforced(cleaned) and not cleaned.get("confirm_enforce"):
            impact = rule_impact(self.instance.pk, timedelta(days=7)) if self.instance.pk else None
            summary = (
                f"In the last 7 days it would have applied to {impact.decisions} request(s) of "
                f"{impact.users} user(s) and {impact.sessions} session(s)."
                if impact is not None
                else "It has no record yet: a new rule is best tried in monitor mode first."
            )
            self.add_error(
                "confirm_enforce", f"Enforcing applies this rule at once. {summary} Tick to confirm."
            )
        return cleaned

    def _newly_enforced(self, cleaned: dict[str, Any]) -> bool:
        was = PolicyRule.objects.filter(pk=self.instance.pk).values_list("mode", flat=True).first()
        return cleaned.get("mode") == PolicyRule.Mode.ENFORCE and was != PolicyRule.Mode.ENFORCE

    @staticmethod
    def _locks_out_administrators(cleaned: dict[str, Any]) -> bool:
        if cleaned.get("effect") != PolicyRule.Effect.DENY or cleaned.get("mode") != PolicyRule.Mode.ENFORCE:
            return False
        actions = cleaned.get("actions") or []
        if actions and RuleAction.MANAGE not in actions:
            return False
        if cleaned.get("inboxes") or cleaned.get("modules"):
            return False
        groups = {group.pk for group in cleaned.get("groups") or ()}
        if not groups:
            return True
        administrators = User.objects.filter(
            Q(is_superuser=True) | Q(groups__name=roles.ADMINISTRATOR), is_active=True
        )
        spared = administrators.exclude(groups__in=groups)
        return not spared.exists()


@admin.register(PolicyRule)
class PolicyRuleAdmin(admin.ModelAdmin[PolicyRule]):
    """Rules as data: tried in monitor mode, their impact read here, then enforced."""

    form = PolicyRuleForm
    list_display = ("name", "mode", "effect", "priority", "updated_at")
    list_filter = ("mode", "effect")
    search_fields = ("name", "description")
    readonly_fields = ("impact",)
    fieldsets = (
        (
            None,
            {"fields": ("name", "description", "priority", "mode", "confirm_enforce", "effect", "impact")},
        ),
        ("Applies to", {"fields": ("groups", "inboxes", "modules", "actions")}),
        (
            "Conditions a request must meet (otherwise: the effect)",
            {
                "fields": (
                    ("window_start", "window_end", "time_zone"),
                    "weekdays",
                    "allowed_networks",
                    "blocked_networks",
                    "max_session_age_minutes",
                    "required_authenticator",
                    "min_device_trust",
                    "max_risk_score",
                )
            },
        ),
    )

    def get_form(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return bind_request(super().get_form(request, *args, **kwargs), request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PolicyRule]:
        rules = super().get_queryset(request)
        if administrator_only(request):
            return rules
        # A supervisor sees the rules on inboxes they manage, and only those.
        managed = policy.managed_inboxes(_ctx(request)).values("pk")
        return (
            rules.filter(inboxes__isnull=False)
            .exclude(inboxes__in=Inbox.objects.exclude(pk__in=managed))
            .distinct()
        )

    def has_change_permission(self, request: HttpRequest, obj: PolicyRule | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._own_or_administrator(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: PolicyRule | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self._own_or_administrator(request, obj)

    @staticmethod
    def _own_or_administrator(request: HttpRequest, obj: PolicyRule | None) -> bool:
        # A rule someone else wrote on a supervisor's inboxes may restrict that supervisor:
        # switching it off would widen their own access, so they read it and leave it be.
        return obj is None or administrator_only(request) or obj.created_by_id == request.user.pk

    @admin.display(description="Impact (what it applied to, or would have)")
    def impact(self, obj: PolicyRule) -> str:
        if obj.pk is None:
            return "Shown once saved: try a new rule in monitor mode and read its impact here."
        rows = []
        for label, window in IMPACT_WINDOWS:
            impact = rule_impact(obj.pk, window)
            base = reverse("admin:audit_ruledecision_changelist")
            links = format_html_join(
                ", ",
                '<a href="{}?rule_id={}&amp;user_id={}">{}</a> ({})',
                ((base, obj.pk, user_id, name, count) for user_id, name, count in impact.top_users),
            )
            rows.append(
                format_html(
                    "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    label,
                    impact.decisions,
                    impact.users,
                    impact.sessions,
                    links or "—",
                )
            )
        head = format_html(
            "<tr><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            "Requests",
            "Users",
            "Sessions",
            "Most affected",
        )
        return format_html("<table>{}{}</table>", head, format_html_join("", "{}", ((row,) for row in rows)))

    def save_model(self, request: HttpRequest, obj: PolicyRule, form: Any, change: bool) -> None:
        before = PolicyRule.objects.filter(pk=obj.pk).values_list("mode", flat=True).first()
        if obj.created_by_id is None:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        if before != obj.mode:
            security_event_record(
                kind=Kind.POLICY_RULE_CHANGED,
                request=request,
                severity=Severity.WARNING if obj.mode == PolicyRule.Mode.ENFORCE else Severity.INFO,
                detail={"rule": obj.pk, "name": obj.name, "mode_from": before, "mode_to": obj.mode},
            )


# --- Outbound DLP ---------------------------------------------------------------------------


class DlpRuleForm(forms.ModelForm[DlpRule]):
    kinds = forms.TypedMultipleChoiceField(
        choices=DlpKind.choices, widget=forms.CheckboxSelectMultiple, help_text="What the rule acts on."
    )

    class Meta:
        model = DlpRule
        fields = ("name", "kinds", "min_confidence", "action", "mode", "applies_to_notes", "inboxes")


@admin.register(DlpRule)
class DlpRuleAdmin(admin.ModelAdmin[DlpRule]):
    """Rules as data, for administrators: a rule spans inboxes, so no supervisor changes it."""

    form = DlpRuleForm
    list_display = ("name", "action", "mode", "min_confidence", "applies_to_notes", "updated_at")
    list_filter = ("action", "mode")
    filter_horizontal = ("inboxes",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return administrator_only(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: DlpRule | None = None) -> bool:
        return administrator_only(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: DlpRule | None = None) -> bool:
        return administrator_only(request) and super().has_delete_permission(request, obj)


@admin.register(DlpFinding)
class DlpFindingAdmin(InboxScopedAdminMixin, admin.ModelAdmin[DlpFinding]):
    """What outbound DLP found, masked, in the inboxes the viewer may see. Read-only: a
    finding is evidence."""

    list_display = (
        "created_at",
        "kind",
        "masked_excerpt",
        "confidence",
        "rule_name",
        "outcome",
        "user",
        "inbox",
    )
    list_filter = ("outcome", "kind", "action", "mode")
    list_select_related = ("user", "inbox")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "inbox",
        "conversation",
        "message",
        "note",
        "user",
        "kind",
        "masked_excerpt",
        "confidence",
        "rule_name",
        "action",
        "mode",
        "outcome",
        "justification",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DlpFinding | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DlpFinding | None = None) -> bool:
        return False


# The exports and break-glass packages keep their own admins; importing them here
# registers them with the site.
from inbox.breakglass import admin as breakglass_admin  # noqa: E402, F401
from inbox.exports import admin as exports_admin  # noqa: E402, F401
