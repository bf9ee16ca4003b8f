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


# What a socket pool's process answers over HTTP: its monitors' URLs (config/urls.py).
SOCKET_POOL_HTTP_PATHS = frozenset({"/healthz", "/metrics"})


class SocketsRefused:
    """The websocket side of an HTTP pool's process (ASGI_SERVES=http): every socket is
    refused at its handshake (HTTP 403), so a proxy that routes one here is seen at once
    instead of loading pages' processes with sockets."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008})


class SocketPoolHttp:
    """The HTTP side of a socket pool's process (ASGI_SERVES=sockets): the health and
    metrics URLs, and a clear 421 for any other request a proxy routed here by mistake."""

    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] in SOCKET_POOL_HTTP_PATHS:
            await self.django_app(scope, receive, send)
            return
        body = (
            b"This server process takes websockets only (ASGI_SERVES=sockets); pages go to the HTTP pool.\n"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
