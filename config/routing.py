"""Websocket routes.

Two doors, chosen by path prefix, each with its own gate:
- `/ws/widget/`: website visitors on customers' sites (foreign origins, no session). The
  visitor consumer checks the page's Origin against its channel's allowlist and the
  visitor's signed token itself.
- everything else: agents. Every route here sits behind the verified-session gate.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver

from channels_app.routing import websocket_urlpatterns as widget_routes
from inbox.routing import websocket_urlpatterns as agent_routes

WIDGET_PREFIX = "/ws/widget/"

agent_websocket_urlpatterns: list[URLPattern | URLResolver] = [*agent_routes]
widget_websocket_urlpatterns: list[URLPattern | URLResolver] = [*widget_routes]


class SocketDoors:
    """Sends widget sockets to the widget stack and every other socket to the agents'
    stack, whose gate refuses what it does not know: deny by default stays the rule."""

    def __init__(self, *, widget: Any, agent: Any) -> None:
        self.widget = widget
        self.agent = agent

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        app = self.widget if scope["path"].startswith(WIDGET_PREFIX) else self.agent
        return await app(scope, receive, send)
