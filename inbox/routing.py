from django.urls import URLPattern, path

from inbox.consumers import AgentConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/agent/", AgentConsumer.as_asgi()),
]
