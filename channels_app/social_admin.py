"""Supervisors configure the social and phone channels and look at (and retry) what they
received. Secrets are write-only; a channel in monitor mode is flagged wherever it shows."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from channels_app import social_services
from channels_app.models import (
    CallRecord,
    InboundEvent,
    MetaChannel,
    SocialChannel,
    TelegramChannel,
    TwilioChannel,
    VerificationMode,
)
from channels_app.provider_http import ProviderError
from channels_app.providers import twilio
from inbox.admin import InboxScopedAdminMixin, ManagedInboxAdminMixin

SECRET_HELP = "Stored encrypted and never shown again. Leave empty to keep the current one."  # noqa: S105
MONITOR_WARNING = (
    "Monitor mode: deliveries that fail verification are accepted (and recorded as security events). "
    "Switch back to enforce once the secret rotation is done."
)
BODY_PREVIEW_BYTES = 16 * 1024


def _https_urls(field: Any, **kwargs: Any) -> forms.Field | None:
    """A scheme-less URL typed into the form means https."""
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    formfield: forms.Field | None = field.formfield(**kwargs)
    return formfield


class SecretsForm(forms.ModelForm[Any]):
    """Secrets are typed in, never rendered back: an empty field keeps the stored one."""

    secret_fields: tuple[str, ...] = ()
    # Secrets that may stay empty (generated on save).
    optional_secrets: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            self.fields[name] = forms.CharField(
                label=self.fields[name].label,
                required=False,
                strip=True,
                widget=forms.PasswordInput(render_value=False),
                help_text=SECRET_HELP,
            )
            self.initial[name] = ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in self.secret_fields:
            value = cleaned.get(name) or (getattr(self.instance, name, "") if self.instance.pk else "")
            if not value and name not in self.optional_secrets:
                self.add_error(name, "Required.")
            cleaned[name] = value
        return cleaned


class TelegramChannelForm(SecretsForm):
    secret_fields = ("bot_token", "webhook_secret")
    optional_secrets = ("webhook_secret",)

    class Meta:
        model = TelegramChannel
        formfield_callback = _https_urls
        fields = [
            "inbox",
            "enabled",
            "mode",
            "verification_mode",
            "bot_token",
            "webhook_secret",
            "public_base_url",
            "api_base_url",
        ]


class MetaChannelForm(SecretsForm):
    secret_fields = ("app_secret", "verify_token", "access_token")

    class Meta:
        model = MetaChannel
        formfield_callback = _https_urls
        fields = [
            "inbox",
            "kind",
            "account_id",
            "enabled",
            "verification_mode",
            "app_secret",
            "verify_token",
            "access_token",
            "public_base_url",
            "api_base_url",
        ]


class TwilioChannelForm(SecretsForm):
    secret_fields = ("auth_token",)

    class Meta:
        model = TwilioChannel
        formfield_callback = _https_urls
        fields = [
            "inbox",
            "enabled",
            "verification_mode",
            "account_sid",
            "auth_token",
            "phone_number",
            "forward_to",
            "voicemail_greeting",
            "voicemail_max_seconds",
            "public_base_url",
            "api_base_url",
        ]


class SocialChannelAdmin(ManagedInboxAdminMixin, admin.ModelAdmin[Any]):
    list_display = ["__str__", "inbox", "enabled", "verification", "last_error"]
    list_filter = ["enabled", "verification_mode"]
    readonly_fields = ["webhook_url", "last_error"]
    list_select_related = ("inbox",)
    search_fields = ("inbox__name",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="Verification", ordering="verification_mode")
    def verification(self, obj: SocialChannel) -> str:
        if obj.verification_mode == VerificationMode.MONITOR:
            return format_html(
                '<strong class="errornote">⚠ {}</strong>', "Monitor: unverified deliveries accepted"
            )
        return "Enforce"

    @admin.display(description="Webhook URL (give it to the provider)")
    def webhook_url(self, obj: SocialChannel) -> str:
        if obj.pk is None:
            return "Shown once saved."
        base = obj.public_base_url.rstrip("/") or "https://<public address>"
        return base + obj.webhook_path()

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: SocialChannel | None = None,
    ) -> HttpResponse:
        # The object the view already loaded: no second query for the warning.
        if obj is not None and obj.verification_mode == VerificationMode.MONITOR and request.method == "GET":
            messages.warning(request, MONITOR_WARNING)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if (
            request.method == "GET"
            and self.get_queryset(request).filter(verification_mode=VerificationMode.MONITOR).exists()
        ):
            messages.warning(request, "Some channels are in monitor mode: " + MONITOR_WARNING)
        return super().changelist_view(request, extra_context)


@admin.register(TelegramChannel)
class TelegramChannelAdmin(SocialChannelAdmin):
    form = TelegramChannelForm
    list_display = ["__str__", "inbox", "enabled", "mode", "verification", "last_polled_at", "last_error"]
    readonly_fields = [
        "webhook_url",
        "update_offset",
        "last_polled_at",
        "webhook_registered_at",
        "last_error",
    ]
    actions = ("webhook_register", "webhook_remove")
    fieldsets = (
        (None, {"fields": ("inbox", "enabled", "mode", "verification_mode", "bot_token")}),
        (
            "Push (webhook)",
            {"fields": ("public_base_url", "webhook_secret", "webhook_url", "webhook_registered_at")},
        ),
        ("Pull (getUpdates)", {"fields": ("update_offset", "last_polled_at")}),
        ("Advanced", {"fields": ("api_base_url", "last_error")}),
    )

    @admin.action(description="Register the webhook with Telegram (push mode)", permissions=["change"])
    def webhook_register(self, request: HttpRequest, queryset: QuerySet[TelegramChannel]) -> None:
        for channel in queryset:
            try:
                url = social_services.telegram_webhook_register(channel=channel)
            except ProviderError as exc:
                messages.error(request, f"{channel}: {exc}")
            else:
                messages.success(request, f"{channel}: Telegram now delivers to {url}.")

    @admin.action(description="Remove the webhook (pull mode with getUpdates)", permissions=["change"])
    def webhook_remove(self, request: HttpRequest, queryset: QuerySet[TelegramChannel]) -> None:
        for channel in queryset:
            try:
                social_services.telegram_webhook_remove(channel=channel)
            except ProviderError as exc:
                messages.error(request, f"{channel}: {exc}")
            else:
                messages.success(request, f"{channel}: switched to pull mode.")


@admin.register(MetaChannel)
class MetaChannelAdmin(SocialChannelAdmin):
    form = MetaChannelForm
    list_display = ["__str__", "inbox", "kind", "account_id", "enabled", "verification", "last_error"]
    list_filter = ["kind", "enabled", "verification_mode"]
    readonly_fields = ["webhook_url", "last_error"]


@admin.register(TwilioChannel)
class TwilioChannelAdmin(SocialChannelAdmin):
    form = TwilioChannelForm
    list_display = ["__str__", "inbox", "phone_number", "enabled", "verification", "last_error"]
    readonly_fields = ["sms_url", "voice_url", "call_status_url", "last_error"]

    @admin.display(description="Messaging webhook (A message comes in)")
    def sms_url(self, obj: TwilioChannel) -> str:
        return twilio.hook_url(obj, "sms") if obj.pk else "Shown once saved."

    @admin.display(description="Voice webhook (A call comes in)")
    def voice_url(self, obj: TwilioChannel) -> str:
        return twilio.hook_url(obj, "voice") if obj.pk else "Shown once saved."

    @admin.display(description="Call status changes")
    def call_status_url(self, obj: TwilioChannel) -> str:
        return twilio.hook_url(obj, "call-status") if obj.pk else "Shown once saved."


@admin.register(InboundEvent)
class InboundEventAdmin(InboxScopedAdminMixin, admin.ModelAdmin[InboundEvent]):
    """Deliveries as stored. Nothing is added or deleted here: only looked at and retried."""

    list_display = [
        "received_at",
        "channel",
        "endpoint",
        "event_key",
        "status",
        "verified",
        "short_reason",
        "attempts",
    ]
    list_filter = ["status", "verified", "endpoint"]
    list_select_related = ("channel", "channel__inbox")
    inbox_path = "channel__inbox"
    search_fields = ("event_key",)
    date_hierarchy = "received_at"
    actions = ("retry",)
    fields = (
        "channel",
        "endpoint",
        "event_key",
        "status",
        "reason",
        "verified",
        "verification_note",
        "attempts",
        "received_at",
        "processed_at",
        "body_preview",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[InboundEvent]:
        return super().get_queryset(request).defer("body")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: InboundEvent | None = None) -> bool:
        return False

    @admin.display(description="Reason")
    def short_reason(self, obj: InboundEvent) -> str:
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"

    @admin.display(description="Body")
    def body_preview(self, obj: InboundEvent) -> str:
        return bytes(obj.body[:BODY_PREVIEW_BYTES]).decode("utf-8", "replace")

    @admin.action(description="Process the selected failed events again", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        count = social_services.inbound_events_retry(ids=list(queryset.values_list("pk", flat=True)))
        messages.info(request, f"{count} failed event(s) queued again.")


@admin.register(CallRecord)
class CallRecordAdmin(InboxScopedAdminMixin, admin.ModelAdmin[CallRecord]):
    list_display = ["created_at", "channel", "caller", "call_status", "answered", "duration_seconds"]
    list_filter = ["answered", "call_status"]
    list_select_related = ("channel", "channel__inbox")
    inbox_path = "channel__inbox"
    search_fields = ("caller", "call_sid")
    fields = (
        "channel",
        "call_sid",
        "caller",
        "call_status",
        "answered",
        "duration_seconds",
        "recording_url",
        "recording_seconds",
        "transcription",
        "message",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CallRecord | None = None) -> bool:
        return False
