"""Supervisors' admin for segments, teams, conversations and the grants between them.

Conversations and contacts are listed through the policy: a supervisor sees the content of
the inboxes they are granted, like anyone else. Grants are edited inline with their
expiry and reason, through guardian's direct foreign-key tables.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.db.models import ForeignKey, QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.html import format_html_join
from guardian.admin import GuardedModelAdmin

from accounts.models import User
from inbox import policy
from inbox.models import (
    CannedResponse,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationGroupObjectPermission,
    ConversationUserObjectPermission,
    Inbox,
    InboxGroupObjectPermission,
    InboxUserObjectPermission,
    Invoice,
    Label,
    Team,
)
from inbox.policy import AccessContext, Action


class InboxScopedAdminMixin:
    """For rows that belong to an inbox (raw mail, webhook deliveries, call records): the
    admin lists only those of inboxes the policy lets the viewer see, as for conversations.
    A Django model permission opens the page; it does not open every segment's data."""

    inbox_path = "inbox"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        inboxes = policy.visible_inboxes(AccessContext.from_request(request))
        return super().get_queryset(request).filter(**{f"{self.inbox_path}__in": inboxes})  # type: ignore[misc]


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


GRANT_FIELDS = ("permission", "expires_at", "reason", "granted_by", "granted_at")


class GrantInline(admin.TabularInline[Any, Any]):
    """Inline editing of grants: permission limited to the object's own, who granted it kept."""

    extra = 0
    readonly_fields = ("granted_by", "granted_at")
    permission_model = ""

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "permission":
            kwargs["queryset"] = Permission.objects.filter(
                content_type__app_label="inbox", content_type__model=self.permission_model
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class InboxUserGrantInline(GrantInline):
    model = InboxUserObjectPermission
    fields = ("user", *GRANT_FIELDS)
    autocomplete_fields = ("user",)
    permission_model = "inbox"
    verbose_name_plural = "grants to users"


class InboxTeamGrantInline(GrantInline):
    model = InboxGroupObjectPermission
    fields = ("group", *GRANT_FIELDS)
    permission_model = "inbox"
    verbose_name_plural = "grants to teams"


class ConversationUserGrantInline(GrantInline):
    model = ConversationUserObjectPermission
    fields = ("user", *GRANT_FIELDS)
    autocomplete_fields = ("user",)
    permission_model = "conversation"
    verbose_name_plural = "grants to users (escalations)"


class ConversationTeamGrantInline(GrantInline):
    model = ConversationGroupObjectPermission
    fields = ("group", *GRANT_FIELDS)
    permission_model = "conversation"
    verbose_name_plural = "grants to teams"


class GrantingAdminMixin:
    """Stamps who granted each new grant."""

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        instances = formset.save(commit=False)
        for instance in instances:
            if hasattr(instance, "granted_by_id") and instance.granted_by_id is None:
                instance.granted_by = request.user
            instance.save()
        for obj in formset.deleted_objects:
            obj.delete()
        formset.save_m2m()


@admin.register(Inbox)
class InboxAdmin(GrantingAdminMixin, GuardedModelAdmin):  # type: ignore[misc]
    list_display = ("name", "channel_kind", "module", "created_at")
    list_filter = ("channel_kind", "module")
    search_fields = ("name",)
    readonly_fields = ("who_can_see",)
    inlines = (InboxTeamGrantInline, InboxUserGrantInline)

    @admin.display(description="Who can see it now")
    def who_can_see(self, obj: Inbox) -> str:
        if obj.pk is None:
            return "—"
        users = policy.users_with_inbox_grant(obj, Action.VIEW)
        return format_html_join(", ", "{}", ((u.get_username(),) for u in users)) or "Nobody"


class TeamForm(forms.ModelForm[Team]):
    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(is_service_account=False),
        required=False,
        widget=admin.widgets.FilteredSelectMultiple("members", is_stacked=False),
    )

    class Meta:
        model = Team
        fields = ("name", "description")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["members"].initial = self.instance.user_set.all()


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    form = TeamForm
    list_display = ("name", "description", "member_count")
    search_fields = ("name",)

    @admin.display(description="Members")
    def member_count(self, obj: Team) -> int:
        return obj.user_set.count()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        form.instance.user_set.set(form.cleaned_data["members"])


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
    )
    readonly_fields = ("inbox", "contact", "subject", "status", "assignee", "last_activity_at")
    inlines = (ConversationUserGrantInline, ConversationTeamGrantInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        # Supervisors see conversations through the same policy as agents.
        return policy.visible_conversations(AccessContext.from_request(request))

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        # Through the loader, so the admin's reads are decided and recorded like any other.
        try:
            return policy.access_conversation(AccessContext.from_request(request), object_id)
        except Http404:
            return None

    def save_model(self, request: HttpRequest, obj: Conversation, form: Any, change: bool) -> None:
        if not policy.can(AccessContext.from_request(request), Action.REPLY, obj):
            raise PermissionDenied("You may see this conversation but not change it.")
        super().save_model(request, obj, form, change)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations come from channels


class ContactIdentityInline(admin.TabularInline[ContactIdentity, Contact]):
    model = ContactIdentity
    extra = 0


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin[Contact]):
    list_display = ("__str__", "created_at", "merged_into")
    search_fields = ("name", "identities__handle")
    inlines = (ContactIdentityInline,)
    raw_id_fields = ("merged_into",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Contact]:
        return policy.visible_contacts(AccessContext.from_request(request))


class GrantAdmin(admin.ModelAdmin[Any]):
    """All grants of one kind in one list: what expires when, and why it was given.

    Grants are created on their inbox's or conversation's page; here only the expiry and
    reason change, so no picker ever lists objects the supervisor cannot see.
    """

    list_display = ("__str__", "permission", "expires_at", "reason", "granted_by", "granted_at")
    list_filter = (GrantStateFilter, "permission")
    list_select_related = ("permission", "granted_by")
    fields = ("holder", "permission", "content_object", "expires_at", "reason", "granted_by", "granted_at")
    readonly_fields = ("holder", "permission", "content_object", "granted_by", "granted_at")
    search_fields = ("reason",)

    @admin.display(description="Granted to")
    def holder(self, obj: Any) -> str:
        return str(getattr(obj, "user", None) or getattr(obj, "group", None))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


for grant_model in (
    InboxUserObjectPermission,
    InboxGroupObjectPermission,
    ConversationUserObjectPermission,
    ConversationGroupObjectPermission,
):
    admin.site.register(grant_model, GrantAdmin)

admin.site.register(Label)
admin.site.register(CannedResponse)
admin.site.register(Invoice)
