from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from audit.models import SecurityEvent


@admin.register(SecurityEvent)
class SecurityEventAdmin(admin.ModelAdmin[SecurityEvent]):
    list_display = ("created_at", "kind", "severity", "user", "username_attempted", "ip_address")
    list_filter = ("kind", "severity")
    search_fields = ("user__username", "username_attempted", "ip_address")
    date_hierarchy = "created_at"
    list_select_related = ("user",)

    # The trail is read-only for everyone, administrators included.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SecurityEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SecurityEvent | None = None) -> bool:
        return False
