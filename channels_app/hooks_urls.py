"""/hooks/<provider>/<channel id>/: provider webhooks, proved by signature, not by session."""

from django.urls import path

from channels_app import webhooks

app_name = "hooks"

urlpatterns = [
    path("meta/<int:channel_id>/", webhooks.meta_webhook, name="meta"),
    path("telegram/<int:channel_id>/", webhooks.telegram_webhook, name="telegram"),
    path("twilio/<int:channel_id>/<slug:hook>/", webhooks.twilio_webhook, name="twilio"),
]
