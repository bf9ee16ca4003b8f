"""The API's side of the gate: the same rule as VerifiedAccessMiddleware."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiToken
from accounts.selectors import is_verified


class VerifiedAccess(BasePermission):
    """Default for every endpoint: an OTP-verified browser session or a usable API token
    of a service account, nothing less. The policy narrows a token further, to its
    inboxes and to read or read/write."""

    message = "Second-factor verification required."

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if isinstance(token, ApiToken):
            # Set only by ApiTokenAuthentication, which verified it; checked again so a
            # token can never stand in for a second factor by any other route.
            # A SCIM provisioning token opens the SCIM endpoints (accounts.scim) only.
            return (
                token.is_usable
                and token.scim_provider_id is None
                and request.user.pk == token.user_id
                and token.user.is_service_account
            )
        return is_verified(request.user)
