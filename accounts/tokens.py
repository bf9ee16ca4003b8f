"""Writes for API tokens: issue, revoke, and verify a presented token.

A token reads `pcl_<lookup_id>_<secret>`. The lookup id finds the row; only a SHA-256 of
the secret is stored, so a database dump yields no usable credential. The full token is
returned once, at issue, and never again.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import ApiToken, IdentityProvider, User
from audit.services import Kind, Severity, security_event_record

# Writing last_used_at on every request would cost a row update per call; to the minute
# is enough to tell a live integration from a dead one.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_LIFETIME = timedelta(days=366)

_LOOKUP_ID_BYTES = 8  # 16 hex characters, the model's lookup_id length
_TOKEN_FORMAT = re.compile(
    rf"^{ApiToken.PREFIX}_(?P<lookup_id>[0-9a-f]{{16}})_(?P<secret>[A-Za-z0-9_-]{{32,128}})$"
)
# Compared against when the lookup id is unknown, so a miss costs what a hit costs.
_UNKNOWN_TOKEN_HASH = hashlib.sha256(b"no such token").hexdigest()


class InvalidToken(ValueError):
    """The token cannot be issued as asked (not a service account, bad expiry)."""


class Refusal(enum.StrEnum):
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"
    ACCOUNT_NOT_ALLOWED = "account_not_allowed"


REFUSAL_MESSAGES = {
    Refusal.MALFORMED: "Malformed API token: expected 'Bearer pcl_<id>_<secret>'.",
    # Unknown id and wrong secret read the same: the answer must not confirm an id.
    Refusal.UNKNOWN: "Invalid API token.",
    Refusal.REVOKED: "This API token has been revoked.",
    Refusal.EXPIRED: "This API token has expired.",
    Refusal.ACCOUNT_NOT_ALLOWED: "This API token's account may not use the API.",
}


class TokenRefused(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(REFUSAL_MESSAGES[reason])
        self.reason = reason


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str  # show once, store nowhere


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def expiry_check(expires_at: datetime) -> None:
    now = timezone.now()
    if expires_at <= now:
        raise InvalidToken("The expiry must be in the future.")
    if expires_at > now + MAX_LIFETIME:
        raise InvalidToken(f"A token may live at most {MAX_LIFETIME.days} days.")


def owner_check(user: User) -> None:
    if not user.is_service_account:
        raise InvalidToken("API tokens belong to service accounts only.")


def credential_assign(token: ApiToken) -> str:
    """Give an unsaved token a fresh lookup id and secret; returns the full token text."""
    secret = secrets.token_urlsafe(32)
    token.lookup_id = secrets.token_hex(_LOOKUP_ID_BYTES)
    token.secret_hash = secret_hash(secret)
    return f"{ApiToken.PREFIX}_{token.lookup_id}_{secret}"


def token_issued_record(*, token: ApiToken, by: User | None, request: HttpRequest | None) -> None:
    security_event_record(
        kind=Kind.API_TOKEN_ISSUED,
        request=request,
        user=token.user,
        detail={
            "token_id": token.pk,
            "lookup_id": token.lookup_id,
            "can_write": token.can_write,
            "by": by.pk if by else None,
        },
    )


def token_issue(
    *,
    name: str,
    user: User,
    inbox_ids: Iterable[int],
    can_write: bool,
    expires_at: datetime,
    by: User | None = None,
    request: HttpRequest | None = None,
    scim_provider: IdentityProvider | None = None,
    revoked_with: User | None = None,
) -> IssuedToken:
    """`revoked_with`: the person the integration acts for; deactivating them over SCIM
    revokes the token in the same transaction."""
    owner_check(user)
    expiry_check(expires_at)
    token = ApiToken(
        name=name,
        user=user,
        can_write=can_write,
        expires_at=expires_at,
        scim_provider=scim_provider,
        revoked_with=revoked_with,
    )
    plaintext = credential_assign(token)
    with transaction.atomic():
        token.save()
        token.inboxes.set(list(inbox_ids))
        token_issued_record(token=token, by=by, request=request)
    return IssuedToken(token=token, plaintext=plaintext)


def tokens_revoke(*, tokens: QuerySet[ApiToken], by: User | None, request: HttpRequest | None = None) -> int:
    """Revoke the tokens that are not revoked yet; the next request with them is refused."""
    with transaction.atomic():
        targets = list(
            tokens.filter(revoked_at__isnull=True).select_related("user").select_for_update(of=("self",))
        )
        ApiToken.objects.filter(pk__in=[t.pk for t in targets]).update(revoked_at=timezone.now())
        for token in targets:
            security_event_record(
                kind=Kind.API_TOKEN_REVOKED,
                request=request,
                user=token.user,
                detail={"token_id": token.pk, "lookup_id": token.lookup_id, "by": by.pk if by else None},
            )
    return len(targets)


def _refuse(reason: Refusal, *, request: HttpRequest, token: ApiToken | None = None) -> TokenRefused:
    detail: dict[str, object] = {"reason": reason.value}
    if token is not None:
        detail["token_id"] = token.pk
    security_event_record(
        kind=Kind.API_TOKEN_REFUSED,
        request=request,
        user=token.user if token is not None else None,
        severity=Severity.WARNING,
        detail=detail,
    )
    return TokenRefused(reason)


def token_authenticate(*, presented: str, request: HttpRequest) -> ApiToken:
    """The usable token that `presented` names, or TokenRefused (recorded as a security
    event). Its state (revoked, expired) is told only to a caller who knows the secret."""
    match = _TOKEN_FORMAT.match(presented)
    if match is None:
        raise _refuse(Refusal.MALFORMED, request=request)
    token = ApiToken.objects.select_related("user").filter(lookup_id=match["lookup_id"]).first()
    expected = token.secret_hash if token is not None else _UNKNOWN_TOKEN_HASH
    if not hmac.compare_digest(expected, secret_hash(match["secret"])) or token is None:
        raise _refuse(Refusal.UNKNOWN, request=request)
    now = timezone.now()
    if token.revoked_at is not None:
        raise _refuse(Refusal.REVOKED, request=request, token=token)
    if token.expires_at <= now:
        raise _refuse(Refusal.EXPIRED, request=request, token=token)
    user = token.user
    if not (user.is_service_account and user.is_active and not user.is_locked):
        raise _refuse(Refusal.ACCOUNT_NOT_ALLOWED, request=request, token=token)
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional, so concurrent requests of the same minute write at most once.
        ApiToken.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION), pk=token.pk
        ).update(last_used_at=now)
        token.last_used_at = now
    return token
