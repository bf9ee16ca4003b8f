from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db.models import ManyToManyField, QuerySet
from django.forms import ModelMultipleChoiceField
from django.http import HttpRequest
from django.utils import timezone

from accounts import roles, services, tokens
from accounts.live import sockets_recheck
from accounts.models import ApiToken, User, UserSession


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
        open_sessions = queryset.filter(ended_at__isnull=True)
        user_ids = set(open_sessions.values_list("user_id", flat=True))
        open_sessions.update(ended_at=timezone.now(), end_reason=UserSession.EndReason.REVOKED)
        sockets_recheck(user_ids=user_ids)


class ApiTokenForm(forms.ModelForm[ApiToken]):
    class Meta:
        model = ApiToken
        fields = ["name", "user", "inboxes", "can_write", "expires_at"]

    def clean_user(self) -> User:
        user: User = self.cleaned_data["user"]
        try:
            tokens.owner_check(user)
        except tokens.InvalidToken as error:
            raise forms.ValidationError(str(error)) from None
        return user

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data["expires_at"]
        try:
            tokens.expiry_check(expires_at)
        except tokens.InvalidToken as error:
            raise forms.ValidationError(str(error)) from None
        return expires_at


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    form = ApiTokenForm
    list_display = ("name", "user", "inbox_names", "can_write", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("can_write", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "lookup_id", "user__username")
    list_select_related = ("user",)
    filter_horizontal = ("inboxes",)
    actions = ("revoke",)
    ISSUE_FIELDS = ("name", "user", "inboxes", "can_write", "expires_at")
    RECORD_FIELDS = ("lookup_id", "created_at", "last_used_at", "revoked_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return super().get_queryset(request).prefetch_related("inboxes")

    @admin.display(description="Inboxes")
    def inbox_names(self, obj: ApiToken) -> str:
        return ", ".join(inbox.name for inbox in obj.inboxes.all())

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        return self.ISSUE_FIELDS if obj is None else self.ISSUE_FIELDS + self.RECORD_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        # A token's reach is fixed when it is issued: widening it later would hand a
        # secret already out in the world more than it was issued for. Issue a new one.
        return () if obj is None else self.ISSUE_FIELDS + self.RECORD_FIELDS

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        # Revoked, never deleted: access events refer to the token by id.
        return False

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            return
        plaintext = tokens.credential_assign(obj)
        super().save_model(request, obj, form, change)
        tokens.token_issued_record(token=obj, by=request.user, request=request)  # type: ignore[arg-type]
        # The one and only time the secret is shown: only its hash is stored.
        messages.warning(request, f"Copy this API token now, it will not be shown again: {plaintext}")

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = tokens.tokens_revoke(tokens=queryset, by=request.user, request=request)  # type: ignore[arg-type]
        messages.success(request, f"{count} token(s) revoked.")
