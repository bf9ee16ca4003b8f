from django.urls import URLPattern, path

from channels_app.livechat.consumers import VisitorConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/widget/<str:key>/", VisitorConsumer.as_asgi()),
]
