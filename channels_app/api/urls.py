"""/api/v1/channels/<id>/messages: integrations push into their API channel."""

from django.urls import path

from channels_app.api import views

urlpatterns = [
    path("<int:channel_id>/messages", views.ChannelMessagesView.as_view(), name="api-channel-messages"),
]
