from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db.models import ManyToManyField, QuerySet
from django.forms import ModelMultipleChoiceField
from django.http import HttpRequest
from django.utils import timezone

from accounts import roles, services
from accounts.models import User, UserSession


def _is_administrator(user: Any) -> bool:
    return bool(user.is_superuser or user.groups.filter(name=roles.ADMINISTRATOR).exists())


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "is_active", "is_staff", "is_locked_display", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "is_service_account", "groups")
    search_fields = ("username", "email", "first_name", "last_name")
    actions = ("unlock_accounts", "reset_second_factor", "end_all_sessions")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,  # type: ignore[misc]
        ("Security", {"fields": ("is_service_account", "locked_at", "lock_reason", "otp_failure_count")}),
    )

    @admin.display(description="Locked", boolean=True)
    def is_locked_display(self, obj: User) -> bool:
        return obj.is_locked

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> tuple[str, ...]:
        readonly = ["locked_at", "lock_reason", "otp_failure_count", "last_login", "date_joined"]
        if not request.user.is_superuser:
            readonly += ["is_superuser", "user_permissions"]
        # Nobody edits their own privileges: a stolen supervisor session cannot escalate.
        if obj is not None and obj.pk == request.user.pk:
            readonly += ["is_superuser", "is_staff", "is_active", "groups", "user_permissions"]
        return tuple(dict.fromkeys(readonly))

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Only administrators touch administrators (or superusers).
        if obj is not None and _is_administrator(obj) and not _is_administrator(request.user):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and (
            obj.pk == request.user.pk or (_is_administrator(obj) and not _is_administrator(request.user))
        ):
            return False
        return super().has_delete_permission(request, obj)

    def formfield_for_manytomany(
        self, db_field: ManyToManyField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelMultipleChoiceField | None:
        if db_field.name == "groups" and not _is_administrator(request.user):
            kwargs["queryset"] = Group.objects.exclude(name=roles.ADMINISTRATOR)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).prefetch_related("groups")

    def _targets(self, request: HttpRequest, queryset: QuerySet[User]) -> list[User]:
        return [u for u in queryset if self.has_change_permission(request, u) and u.pk != request.user.pk]

    @admin.action(description="Unlock selected accounts", permissions=["change"])
    def unlock_accounts(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in self._targets(request, queryset.filter(locked_at__isnull=False)):
            services.account_unlock(user=user, by=request.user, request=request)  # type: ignore[arg-type]
        messages.success(request, "Accounts unlocked.")

    @admin.action(description="Reset second factor (user re-enrolls at next sign-in)", permissions=["change"])
    def reset_second_factor(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in self._targets(request, queryset):
            services.second_factor_reset(user=user, by=request.user, request=request)  # type: ignore[arg-type]
        messages.success(request, "Second factors reset; their sessions have ended.")

    @admin.action(description="End all sessions of the selected users", permissions=["change"])
    def end_all_sessions(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in self._targets(request, queryset):
            services.sessions_end_all(user=user, reason=UserSession.EndReason.REVOKED)
        messages.success(request, "Sessions ended.")


@admin.register(UserSession)
class UserSessionAdmin(admin.ModelAdmin[UserSession]):
    list_display = (
        "user",
        "created_at",
        "last_seen_at",
        "ip_address",
        "user_agent",
        "ended_at",
        "end_reason",
    )
    list_filter = ("end_reason", ("ended_at", admin.EmptyFieldListFilter))
    search_fields = ("user__username", "ip_address")
    list_select_related = ("user",)
    readonly_fields = (
        "user",
        "created_at",
        "last_seen_at",
        "ip_address",
        "user_agent",
        "user_agent_hash",
        "ended_at",
        "end_reason",
    )
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UserSession | None = None) -> bool:
        return False

    @admin.action(description="End selected sessions", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[UserSession]) -> None:
        queryset.filter(ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=UserSession.EndReason.REVOKED
        )
