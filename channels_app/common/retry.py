"""What a failed delivery means for the next try, and when that try comes: one policy for
every channel's outbound sends and for inbound events that must wait."""

from __future__ import annotations

import random

from django.conf import settings
from django.db import InterfaceError, OperationalError

# A database restart is worth waiting out, like a provider's hiccup; a refused credential is not.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)
MAX_BACKOFF_SECONDS = 600.0


class DeliveryError(Exception):
    """A provider, mail server or integrator could not be reached or refused.
    `transient`: the same request may well succeed later; `retry_after`: what it asked for."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


def backoff_ceiling(attempt: int) -> float:
    return min(settings.SOCIAL_RETRY_BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)


def backoff(attempt: int, at_least: float | None = None) -> float:
    """Full jitter: many sends failing at once do not all come back at once."""
    return max(random.uniform(0, backoff_ceiling(attempt)), at_least or 0.0)  # noqa: S311  # jitter, not a secret
