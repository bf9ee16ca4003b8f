from __future__ import annotations

from typing import Any

from auditlog.admin import LogEntryAdmin as AuditlogLogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin
from django.http import HttpRequest

from audit.models import SecurityEvent
from inbox.admin import ManagedUsersAdminMixin


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
