"""Identity providers and their group mappings: administrators only. A new mapping is a
privilege change (it reaches everyone in the IdP's group), so it becomes active through
the change-request flow, with four eyes where the approval rules ask for it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.db.models import ForeignKey
from django.http import HttpRequest

from accounts import roles, supervision
from accounts.sso import services
from accounts.sso.models import IdentityProvider, IdpGroupMapping, IdpSession, LocalSignInRule
from channels_app.common.admin import SecretsForm, https_urls
from inbox.admin import administrator_only
from inbox.policy import AccessContext


class AdministratorsOnlyAdmin(admin.ModelAdmin[Any]):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return administrator_only(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return administrator_only(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return administrator_only(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return administrator_only(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return administrator_only(request)


class IdentityProviderForm(SecretsForm):
    secret_fields = ("client_secret",)

    class Meta:
        model = IdentityProvider
        fields = "__all__"
        formfield_callback = https_urls


@admin.register(IdentityProvider)
class IdentityProviderAdmin(AdministratorsOnlyAdmin):
    form = IdentityProviderForm
    list_display = ("name", "slug", "enabled", "issuer", "allow_jit_provisioning", "minimum_assurance")
    prepopulated_fields = {"slug": ("name",)}


class IdpGroupMappingForm(forms.ModelForm[IdpGroupMapping]):
    reason = forms.CharField(max_length=300, help_text="A mapping is a privilege change: say why.")

    class Meta:
        model = IdpGroupMapping
        fields = ("provider", "idp_group", "group")


@admin.register(IdpGroupMapping)
class IdpGroupMappingAdmin(AdministratorsOnlyAdmin):
    form = IdpGroupMappingForm
    list_display = ("provider", "idp_group", "group", "active")
    list_filter = ("provider", "active")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Changing the target would skip the approval: delete and request a new mapping.
        return False

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "group":
            kwargs["queryset"] = Group.objects.exclude(name=roles.ADMINISTRATOR)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: IdpGroupMapping, form: Any, change: bool) -> None:
        try:
            outcome = services.group_mapping_request(
                ctx=AccessContext.from_request(request),
                request=request,
                mapping=obj,
                reason=form.cleaned_data["reason"],
            )
        except supervision.SupervisionRefused as refused:
            messages.error(request, str(refused))
            return
        if not outcome.applied:
            messages.info(request, "The mapping waits for a second approval before it applies.")


@admin.register(IdpSession)
class IdpSessionAdmin(AdministratorsOnlyAdmin):
    """Which IdP and assurance each session has: for monitoring, read only."""

    list_display = ("session", "provider", "subject", "assurance", "acr", "authenticated_at")
    list_filter = ("provider", "assurance")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LocalSignInRule)
class LocalSignInRuleAdmin(AdministratorsOnlyAdmin):
    list_display = ("role", "local_sign_in_allowed")
