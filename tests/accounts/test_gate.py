"""Every route refuses a session that is not OTP-verified, except the allowed few.

The walk reads the live URL configuration, so a route added later is covered without
anyone remembering to add it here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, path

from accounts.middleware import SELF_AUTHENTICATING_PREFIXES
from accounts.sockets import VerifiedSocketMiddleware
from config.routing import agent_websocket_urlpatterns
from tests.conftest import start_session

ALLOWED_ANONYMOUS = {
    "accounts:login",
    "accounts:activate",
    "health",
    # Single sign-on's doors: the IdP proves the person (state, PKCE, signed tokens).
    "accounts:sso_start",
    "accounts:sso_callback",
    "accounts:sso_backchannel_logout",
}
# The device refresh answers only a proof of the session's device key, DBSC's two endpoints
# only a JWT of the session's DBSC key (tests/devices).
ALLOWED_PASSWORD_ONLY = ALLOWED_ANONYMOUS | {
    "accounts:otp",
    "accounts:enroll",
    "accounts:logout",
    "accounts:device_refresh",
    "accounts:dbsc_register",
    "accounts:dbsc_refresh",
    "accounts:passkey_assertion_options",
}


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            yield (
                f"{namespace}{entry.name or entry.callback.__name__}",
                _concrete(prefix + str(entry.pattern)),
            )


def _concrete(pattern: str) -> str:
    """A URL that the pattern matches, with sample values for its parameters."""
    url = re.sub(r"<(?:int:)?\w+>", "1", pattern)
    url = re.sub(r"<path:\w+>", "x", url)
    url = re.sub(r"<(?:slug|str|uuid):\w+>", "00000000-0000-0000-0000-000000000001", url)
    url = re.sub(r"\(\?P<\w+>[^)]*\)", "1", url)  # admin's regex routes
    url = url.replace("^", "").replace("$", "").replace("\\", "")
    return "/" + url


ROUTES = sorted(set(_walk(get_resolver().url_patterns)))


def test_walk_finds_the_routes() -> None:
    names = {name for name, _ in ROUTES}
    assert {"accounts:login", "inbox:list", "admin:index", "accounts:security"} <= names
    assert len(ROUTES) > 30  # the admin alone contributes dozens


def _refused(response: Any) -> bool:
    if response.status_code in (401, 403):
        return True
    # Webhooks and the widget prove their caller by signature or token, not by session: an
    # unsigned request to them must end in a client error, whatever its kind.
    if response.wsgi_request.path.startswith(SELF_AUTHENTICATING_PREFIXES):
        return 400 <= response.status_code < 500
    return response.status_code == 302 and response["Location"].startswith(
        ("/accounts/login/", "/accounts/verify/", "/accounts/enroll/")
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "url"), ROUTES)
def test_anonymous_is_refused_everywhere_but_login(name: str, url: str) -> None:
    client = Client()
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        if name in ALLOWED_ANONYMOUS:
            continue
        assert _refused(response), f"{method.upper()} {url} ({name}) answered {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "url"), ROUTES)
def test_password_only_session_is_refused(name: str, url: str, make_user: Any) -> None:
    user = make_user("Supervisor", is_staff=True, is_superuser=True)
    client = Client()
    start_session(client, user, verified=False)
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        if name in ALLOWED_PASSWORD_ONLY:
            continue
        assert _refused(response), f"{method.upper()} {url} ({name}) answered {response.status_code}"


class _Probe(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


def _socket_app(routes: list[Any]) -> Any:
    return AuthMiddlewareStack(VerifiedSocketMiddleware(URLRouter(routes)))


async def _connects(app: Any, url: str, cookie: str = "") -> bool:
    headers = [(b"origin", b"http://testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(app, url, headers=headers)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return bool(connected)


def _socket_urls() -> list[str]:
    urls = [url for _, url in _walk(agent_websocket_urlpatterns)]
    return urls or []


@pytest.mark.django_db(transaction=True)
async def test_sockets_refuse_unverified_sessions(make_user: Any, role_groups: None) -> None:
    from asgiref.sync import sync_to_async

    routes = [*agent_websocket_urlpatterns, path("ws/probe/", _Probe.as_asgi())]
    app = _socket_app(routes)
    urls = [*_socket_urls(), "/ws/probe/"]

    user = await sync_to_async(make_user)("Agent")
    password_only, verified = Client(), Client()
    await sync_to_async(start_session)(password_only, user, verified=False)
    await sync_to_async(start_session)(verified, user, verified=True)

    def cookie(client: Client) -> str:
        return "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())

    for url in urls:
        assert not await _connects(app, url), f"anonymous socket accepted on {url}"
        assert not await _connects(app, url, cookie(password_only)), f"password-only socket accepted on {url}"
    # The gate is not simply closed: a verified session gets through.
    assert await _connects(app, "/ws/probe/", cookie(verified))


def test_url_names_are_remembered_only_for_short_paths() -> None:
    """The gates name the URL of every request; a spray of long made-up paths must not
    grow the process's memory of them."""
    from accounts import middleware

    middleware._remembered_name.cache_clear()
    assert middleware.url_name("/") == "inbox:list"
    assert middleware.url_name("/") == "inbox:list"
    assert middleware._remembered_name.cache_info().hits == 1
    long_path = "/" + "a" * middleware.URL_NAME_REMEMBERED_LENGTH
    assert middleware.url_name(long_path) is None
    assert middleware._remembered_name.cache_info().currsize == 1
