from __future__ import annotations

from typing import Any

from auditlog.admin import LogEntryAdmin as AuditlogLogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest

from accounts.models import User
from audit.models import AccessEvent, RuleDecision, SecurityEvent
from inbox import policy
from inbox.admin import ManagedUsersAdminMixin
from inbox.models import PolicyRule
from inbox.policy import AccessContext, Action


class ReadOnlyTrailMixin:
    # The trail is read-only for everyone, administrators included.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyTrailMixin, ManagedUsersAdminMixin, admin.ModelAdmin[SecurityEvent]):
    """Security events of the viewer and of the accounts they manage; administrators see all
    (failed sign-ins to unknown names belong to no account and are theirs to watch)."""

    list_display = ("created_at", "kind", "severity", "user", "username_attempted", "ip_address")
    list_filter = ("kind", "severity")
    search_fields = ("user__username", "username_attempted", "ip_address")
    date_hierarchy = "created_at"
    list_select_related = ("user",)


admin.site.unregister(LogEntry)


@admin.register(LogEntry)
class LogEntryAdmin(ManagedUsersAdminMixin, AuditlogLogEntryAdmin):
    """Model changes made by the viewer or by the accounts they manage."""

    user_path = "actor"


@admin.register(RuleDecision)
class RuleDecisionAdmin(ReadOnlyTrailMixin, admin.ModelAdmin[RuleDecision]):
    """What each policy rule did, or in monitor mode would have done, with its inputs. A
    supervisor sees the decisions of the rules they may edit."""

    list_display = (
        "created_at",
        "rule_id",
        "outcome",
        "user_id",
        "action",
        "object_type",
        "object_id",
        "inputs",
    )
    list_filter = ("outcome", "action", "rule_id", "user_id")
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[RuleDecision]:
        from inbox.admin import PolicyRuleAdmin

        decisions = super().get_queryset(request)
        rules = PolicyRuleAdmin(PolicyRule, self.admin_site).get_queryset(request)
        return decisions.filter(rule_id__in=rules.values("pk"))


class AccessActionFilter(admin.SimpleListFilter):
    # Offered from the policy's catalogue: Django's default would scan the whole log for
    # its distinct values on every page view.
    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(action.value, action.value) for action in Action]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(AccessEvent)
class AccessEventAdmin(ReadOnlyTrailMixin, admin.ModelAdmin[AccessEvent]):
    """Every policy decision, reads included: the security console's access log. Scoped as
    `ManagedUsersAdminMixin` scopes the other trails (the viewer's own events and those of
    the accounts they manage; administrators all), on a plain user id column.

    Filter by user, object and time with the URL too: `?user_id=…`,
    `?object_type=inbox.conversation&object_id=…`, `?created_at__gte=…`.
    """

    list_display = ("created_at", "username", "user_id", "action", "object_type", "object_id", "allowed")
    list_filter = ("allowed", AccessActionFilter)
    date_hierarchy = "created_at"
    # The log grows by every page view: counting it for the paginator is not worth a scan.
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessEvent]:
        ctx = AccessContext.from_request(request)
        events = (
            super()
            .get_queryset(request)
            .annotate(username=Subquery(User.objects.filter(pk=OuterRef("user_id")).values("username")[:1]))
        )
        if policy.is_administrator(ctx.user):
            return events
        return events.filter(Q(user_id__in=policy.managed_users(ctx).values("pk")) | Q(user_id=ctx.user.pk))

    @admin.display(description="user", ordering="username")
    def username(self, obj: AccessEvent) -> str:
        return getattr(obj, "username", None) or "—"


# The alerts queue and response policies register themselves with the admin here.
from audit.alerts import admin as alerts_admin  # noqa: E402, F401
