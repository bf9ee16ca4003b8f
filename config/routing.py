"""Websocket routes. Every route here sits behind the verified-session gate."""

from django.urls import URLPattern, URLResolver

agent_websocket_urlpatterns: list[URLPattern | URLResolver] = []
