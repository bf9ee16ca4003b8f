"""Supervisors configure WhatsApp numbers, Messenger pages and Instagram accounts here."""

from __future__ import annotations

from django.contrib import admin

from channels_app.common.admin import SecretsForm, https_urls
from channels_app.webhooks.admin import SocialChannelAdmin
from channels_app.webhooks.providers.meta.models import MetaChannel
from channels_app.webhooks.providers.meta.provider import Meta


class MetaChannelForm(SecretsForm):
    secret_fields = Meta.secret_fields

    class Meta:
        model = MetaChannel
        formfield_callback = https_urls
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


@admin.register(MetaChannel)
class MetaChannelAdmin(SocialChannelAdmin):
    form = MetaChannelForm
    list_display = ["__str__", "inbox", "kind", "account_id", "enabled", "verification", "last_error"]
    list_filter = ["kind", "enabled", "verification_mode"]
    readonly_fields = ["webhook_url", "last_error"]
