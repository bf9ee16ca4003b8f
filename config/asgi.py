"""ASGI entry point: HTTP and websockets, or one of them (settings.ASGI_SERVES).

Django is set up first so that the routing modules can import models. HTTP goes through
config.handler (one thread hand-over per request), not Django's stock ASGI handler.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from config.handler import OneHandOverHandler  # noqa: E402
from config.process import collector_tune  # noqa: E402

django_asgi_app = OneHandOverHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from accounts.sockets import VerifiedSocketMiddleware  # noqa: E402
from config.routing import (  # noqa: E402
    SocketDoors,
    SocketPoolHttp,
    SocketsRefused,
    agent_websocket_urlpatterns,
    widget_websocket_urlpatterns,
)

application = ProtocolTypeRouter(
    {
        "http": SocketPoolHttp(django_asgi_app) if settings.ASGI_SERVES == "sockets" else django_asgi_app,
        "websocket": SocketsRefused()
        if settings.ASGI_SERVES == "http"
        else SocketDoors(
            # Visitors come from customers' sites: no cookies, no host check; the consumer
            # checks the channel's Origin allowlist and the visitor's signed token.
            widget=URLRouter(widget_websocket_urlpatterns),
            agent=AllowedHostsOriginValidator(
                AuthMiddlewareStack(VerifiedSocketMiddleware(URLRouter(agent_websocket_urlpatterns)))
            ),
        ),
    }
)

# Everything is loaded: see config.process (the thresholds were measured where sockets are
# served; a pages-only process keeps Python's).
collector_tune(socket_server=settings.ASGI_SERVES != "http")
