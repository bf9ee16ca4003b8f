"""/hooks/<provider>/<channel id>/[<hook>/]: provider webhooks, proved by signature, not by session."""

from django.urls import path

from channels_app.webhooks import views

app_name = "hooks"

urlpatterns = [
    path("<slug:provider_name>/<int:channel_id>/", views.webhook, name="webhook"),
    path("<slug:provider_name>/<int:channel_id>/<slug:hook>/", views.webhook, name="webhook-hook"),
]
