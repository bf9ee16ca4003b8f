"""Devices in the supervisors' admin: those of the accounts they manage, to approve or
revoke (never their own: a supervisor cannot raise their own device's trust)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.devices import services
from accounts.models import BrowserDevice, User
from inbox.admin import ManagedUsersAdminMixin


@admin.register(BrowserDevice)
class BrowserDeviceAdmin(ManagedUsersAdminMixin, admin.ModelAdmin[BrowserDevice]):
    list_display = (
        "user",
        "name",
        "browser_version",
        "binding",
        "approval",
        "trust_level",
        "first_seen_at",
        "last_seen_at",
        "last_ip",
        "revoked_at",
    )
    list_filter = ("approval", "binding", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("user__username", "name", "last_ip")
    list_select_related = ("user", "last_passkey")
    # The public key is identity, not a secret, but nothing here edits it.
    readonly_fields = (
        "user",
        "name",
        "binding",
        "key_thumbprint",
        "user_agent",
        "browser_family",
        "browser_version",
        "os_family",
        "client_hints",
        "first_seen_at",
        "last_seen_at",
        "last_ip",
        "approval",
        "approved_by",
        "approved_at",
        "revoked_at",
        "trust_level",
        "last_passkey_at",
    )
    exclude = ("public_key", "last_passkey")
    actions = ("approve", "revoke")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: BrowserDevice | None = None) -> bool:
        # Revoked, never deleted: sessions and security events refer to the device.
        return False

    @admin.display(description="Trust")
    def trust_level(self, obj: BrowserDevice) -> str:
        return obj.trust_explanation

    def _targets(self, request: HttpRequest, queryset: QuerySet[BrowserDevice]) -> list[BrowserDevice]:
        return self.managed_rows(request, queryset.filter(revoked_at__isnull=True))

    @admin.action(description="Approve selected devices", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[BrowserDevice]) -> None:
        by: User = request.user  # type: ignore[assignment]  # the admin admits only signed-in users
        targets = self._targets(request, queryset)
        count = sum(services.device_approve(device=device, by=by, request=request) for device in targets)
        skipped = queryset.count() - len(targets)
        messages.success(request, f"{count} device(s) approved.")
        if skipped:
            messages.warning(
                request, f"{skipped} device(s) skipped: your own, revoked, or outside your scope."
            )

    @admin.action(description="Revoke selected devices (ends their sessions)", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[BrowserDevice]) -> None:
        by: User = request.user  # type: ignore[assignment]  # the admin admits only signed-in users
        targets = self._targets(request, queryset)
        ended = sum(services.device_revoke(device=device, by=by, request=request) for device in targets)
        messages.success(
            request, f"{len(targets)} device(s) revoked; {ended} session(s) ended, their sockets close now."
        )
