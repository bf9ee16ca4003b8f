"""The API's side of the gate: the same rule as VerifiedAccessMiddleware."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.selectors import is_verified


class VerifiedAccess(BasePermission):
    """Default for every endpoint: an OTP-verified browser session, nothing less."""

    message = "Second-factor verification required."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_verified(request.user)
