"""Supervisors read the exports of the inboxes they may see, and freeze or lift the exports
of the people they manage. An export row is evidence: nobody edits it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import ForeignKey, QuerySet
from django.http import HttpRequest

from inbox import policy
from inbox.admin import InboxScopedAdminMixin, ManagedUsersAdminMixin
from inbox.exports import services
from inbox.exports.models import ExportFreeze, ExportJob
from inbox.policy import AccessContext


@admin.register(ExportJob)
class ExportJobAdmin(InboxScopedAdminMixin, admin.ModelAdmin[ExportJob]):
    list_display = (
        "pk",
        "created_at",
        "user",
        "inbox",
        "kind",
        "format",
        "status",
        "rows_written",
        "downloaded_at",
    )
    list_filter = ("status", "kind", "format")
    list_select_related = ("user", "inbox")
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in ExportJob._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ExportJob | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ExportJob | None = None) -> bool:
        return False


@admin.register(ExportFreeze)
class ExportFreezeAdmin(ManagedUsersAdminMixin, admin.ModelAdmin[ExportFreeze]):
    list_display = ("user", "reason", "until", "created_at", "lifted_at", "lifted_by")
    list_select_related = ("user", "lifted_by")
    fields = ("user", "reason", "until")
    actions = ["lift"]

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "user":
            kwargs["queryset"] = policy.managed_users(AccessContext.from_request(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: ExportFreeze | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # the list, not an edit

    def has_delete_permission(self, request: HttpRequest, obj: ExportFreeze | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ExportFreeze, form: Any, change: bool) -> None:
        frozen = services.exports_freeze(obj.user, reason=obj.reason, until=obj.until)
        obj.pk = frozen.pk

    @admin.action(description="Lift the selected users' export freezes", permissions=["change"])
    def lift(self, request: HttpRequest, queryset: QuerySet[ExportFreeze]) -> None:
        by = AccessContext.from_request(request).user
        lifted = sum(
            services.exports_unfreeze(freeze.user, by=by) for freeze in queryset.select_related("user")
        )
        messages.success(request, f"Lifted {lifted} freeze(s).")
