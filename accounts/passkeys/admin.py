"""Passkeys in the supervisors' admin: those of the accounts they manage, listed with what
the server verified of each, and removable one by one through the owner's own removal
service (a fresh factor of the supervisor first). Never their own here — she manages hers
on her security page — and never an administrator's unless she is one."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import Passkey, User
from accounts.passkeys import services
from inbox.admin import ManagedUsersAdminMixin


@admin.register(Passkey)
class PasskeyAdmin(ManagedUsersAdminMixin, admin.ModelAdmin[Passkey]):
    list_display = ("user", "name", "authenticator", "kind", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "name")
    # The public key and credential id are identity, not secrets; nothing here edits them.
    fields = ("user", "name", "authenticator", "kind", "aaguid", "created_at", "last_used_at")
    readonly_fields = fields
    actions = ("remove",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Passkey]:
        return super().get_queryset(request).filter(confirmed=True).exclude(user_id=request.user.pk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A passkey is made by its owner's authenticator, never typed in.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Passkey | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Passkey | None = None) -> bool:
        # Django's delete would skip the removal service: its record and its fresh factor.
        return False

    def has_remove_permission(self, request: HttpRequest) -> bool:
        # Django's delete permission, held for this action in place of its bulk delete.
        return super().has_delete_permission(request)

    @admin.display(description="Authenticator")
    def authenticator(self, obj: Passkey) -> str:
        return obj.authenticator_name

    @admin.display(description="Kind")
    def kind(self, obj: Passkey) -> str:
        return "device-bound" if obj.is_device_bound else "synced"

    @admin.action(description="Remove selected passkeys", permissions=["remove"])
    def remove(self, request: HttpRequest, queryset: QuerySet[Passkey]) -> None:
        by: User = request.user  # type: ignore[assignment]  # the admin admits only signed-in users
        # Asked before the first removal, so a stale factor removes none rather than some.
        services.factor_change_check(request)
        targets = self.managed_rows(request, queryset)
        for passkey in targets:
            services.passkey_remove(request=request, passkey=passkey, by=by)
        messages.success(request, f"{len(targets)} passkey(s) removed.")
        skipped = queryset.count() - len(targets)
        if skipped:
            messages.warning(request, f"{skipped} passkey(s) skipped: outside your scope.")
