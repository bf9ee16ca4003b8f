"""Bearer-token authentication for integrations (`Authorization: Bearer pcl_…`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts import tokens
from accounts.models import ApiToken, User

KEYWORD = "Bearer"


class ApiTokenAuthentication(BaseAuthentication):
    """Authenticates a request by an API token; request.auth is then the ApiToken.

    Any other Authorization scheme is left to the next authenticator (the session), so a
    request that proves nothing still ends as 401. A bearer token that does not verify is
    refused outright: it never falls back to a session.
    """

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        # The Django request, not DRF's: asking DRF's request for its user here would
        # re-enter authentication.
        http_request = request._request
        try:
            presented = parts[1].decode("ascii") if len(parts) == 2 else ""
        except UnicodeDecodeError:
            presented = ""  # refused as malformed, like any other text that is not a token
        try:
            token = tokens.token_authenticate(presented=presented, request=http_request)
        except tokens.TokenRefused as refused:
            raise AuthenticationFailed(str(refused), code=refused.reason.value) from None
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to a request that is not authenticated at all.
        return f'{KEYWORD} realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "pcl_<lookup_id>_<secret>",
            "description": "A scoped, expiring token of a service account, issued in the admin.",
        }
