"""Reads for passkeys: only ever the signed-in person's own."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from accounts.passkeys.models import Passkey


def passkey_list(*, user: User) -> QuerySet[Passkey]:
    return Passkey.objects.filter(user=user, confirmed=True).order_by("created_at")


def passkey_of(*, user: User, passkey_id: int) -> Passkey | None:
    """One of the user's own passkeys; another person's is answered as absent."""
    return passkey_list(user=user).filter(pk=passkey_id).first()


def has_passkey(user: User) -> bool:
    return passkey_list(user=user).exists()
