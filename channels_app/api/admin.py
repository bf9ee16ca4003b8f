"""Supervisors configure API channels here: where replies go, and the secret that signs them."""

from __future__ import annotations

from django.contrib import admin

from channels_app.api.models import ApiChannel
from channels_app.api.provider import Api
from channels_app.common.admin import SecretsForm, https_urls
from channels_app.webhooks.admin import SocialChannelAdmin


class ApiChannelForm(SecretsForm):
    secret_fields = Api.secret_fields

    class Meta:
        model = ApiChannel
        formfield_callback = https_urls
        fields = ["inbox", "enabled", "callback_url", "callback_secret"]


@admin.register(ApiChannel)
class ApiChannelAdmin(SocialChannelAdmin):
    form = ApiChannelForm
    list_display = ["__str__", "inbox", "callback_url", "enabled", "last_error"]
    readonly_fields = ["messages_url", "last_error"]

    @admin.display(description="Push messages to (with the integration's API token)")
    def messages_url(self, obj: ApiChannel) -> str:
        return obj.messages_path() if obj.pk else "Shown once saved."
