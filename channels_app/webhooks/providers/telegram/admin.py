"""Supervisors configure Telegram bots here and switch them between push and pull."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from channels_app.common.admin import SecretsForm, https_urls
from channels_app.common.provider_http import ProviderError
from channels_app.webhooks.admin import SocialChannelAdmin
from channels_app.webhooks.providers.telegram import services
from channels_app.webhooks.providers.telegram.models import TelegramChannel
from channels_app.webhooks.providers.telegram.provider import Telegram


class TelegramChannelForm(SecretsForm):
    secret_fields = Telegram.secret_fields
    optional_secrets = ("webhook_secret",)

    class Meta:
        model = TelegramChannel
        formfield_callback = https_urls
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
                url = services.telegram_webhook_register(channel=channel)
            except ProviderError as exc:
                messages.error(request, f"{channel}: {exc}")
            else:
                messages.success(request, f"{channel}: Telegram now delivers to {url}.")

    @admin.action(description="Remove the webhook (pull mode with getUpdates)", permissions=["change"])
    def webhook_remove(self, request: HttpRequest, queryset: QuerySet[TelegramChannel]) -> None:
        for channel in queryset:
            try:
                services.telegram_webhook_remove(channel=channel)
            except ProviderError as exc:
                messages.error(request, f"{channel}: {exc}")
            else:
                messages.success(request, f"{channel}: switched to pull mode.")
