"""Reads for single sign-on."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts import roles
from accounts.models import User
from accounts.sso.models import IdentityProvider, IdpSession, LocalSignInRule


def sign_in_providers() -> QuerySet[IdentityProvider]:
    """The IdPs offered on the sign-in page."""
    return IdentityProvider.objects.filter(enabled=True).only("name", "slug").order_by("name")


def enabled_provider(slug: str) -> IdentityProvider | None:
    return IdentityProvider.objects.filter(slug=slug, enabled=True).first()


def local_sign_in_allowed(user: User) -> bool:
    """Whether this person may sign in with a password: not when one of their roles is
    IdP-only, unless they are an administrator (break-glass)."""
    groups = user.groups.all()
    if groups.filter(name=roles.ADMINISTRATOR).exists():
        return True
    return not LocalSignInRule.objects.filter(role__in=groups, local_sign_in_allowed=False).exists()


def session_identity_provider(session_id: int | None) -> IdentityProvider | None:
    """The enabled IdP that opened this session (it can confirm a step-up), else None."""
    if session_id is None:
        return None
    linked = (
        IdpSession.objects.filter(session_id=session_id, provider__enabled=True)
        .select_related("provider")
        .first()
    )
    return linked.provider if linked is not None else None
