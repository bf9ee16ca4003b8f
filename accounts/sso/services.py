"""Writes for single sign-on: starting and completing an IdP sign-in, provisioning the
account and its teams from the IdP's claims, and ending sessions the IdP logs out."""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts import roles, supervision
from accounts.live import sockets_recheck
from accounts.models import ChangeKind, User, UserSession
from accounts.services import (
    IDP_ASSURANCE_KEY,
    IDP_REAUTHENTICATE_AT_KEY,
    session_mark_verified,
    session_start,
)
from accounts.sso import oidc
from accounts.sso.models import (
    ASSURANCE_ORDER,
    Assurance,
    ExternalIdentity,
    IdentityProvider,
    IdentityProviderDevice,
    IdpGroupMapping,
    IdpSession,
)
from accounts.sso.selectors import session_identity_provider
from audit.services import SESSION_ID_KEY, Kind, Severity, security_event_record
from inbox.policy import AccessContext

PENDING_KEY = "portcullis_sso_pending"
# A sign-in left at the IdP for longer than this is not completed.
PENDING_MAX_AGE_SECONDS = 600
# Several tabs may start a sign-in at once; the oldest beyond this are forgotten.
PENDING_MAX_COUNT = 5
# Role groups the staff flag follows, as supervision's changes set it.
STAFF_ROLES = frozenset({roles.SUPERVISOR, roles.ADMINISTRATOR})

# RFC 8176 method values and OpenID's phishing-resistant acr values.
PHISHING_RESISTANT_AMR = frozenset({"hwk", "fido", "sc"})
PHISHING_RESISTANT_ACR = frozenset({"phr", "phrh"})
MULTI_FACTOR_AMR = frozenset({"mfa", "otp", "sms", "tel", "swk"})


class Refusal(enum.StrEnum):
    STATE = "state"
    EXPIRED_ATTEMPT = "expired_attempt"
    IDP_ERROR = "idp_error"
    UNVERIFIABLE = "unverifiable"
    STALE_AUTHENTICATION = "stale_authentication"
    JIT_OFF = "jit_off"
    ACCOUNT_UNUSABLE = "account_unusable"
    # A step-up through the IdP: someone else signed in there, or too weakly.
    OTHER_SUBJECT = "other_subject"
    WEAK_ASSURANCE = "weak_assurance"


REFUSAL_MESSAGES = {
    Refusal.STATE: "This sign-in link is not one this browser started. Start again.",
    Refusal.EXPIRED_ATTEMPT: "The sign-in took too long. Start again.",
    Refusal.IDP_ERROR: "Your company's sign-in service did not sign you in.",
    Refusal.UNVERIFIABLE: "Your company's sign-in service sent an answer that could not be verified.",
    Refusal.STALE_AUTHENTICATION: "Your company's sign-in is too old. Start again.",
    Refusal.JIT_OFF: "There is no Portcullis account for you yet. Ask your supervisor.",
    Refusal.ACCOUNT_UNUSABLE: "This account cannot sign in. Ask your supervisor.",
    Refusal.OTHER_SUBJECT: (
        "Your company's sign-in service confirmed another person. Sign in there as yourself."
    ),
    Refusal.WEAK_ASSURANCE: (
        "Your company's sign-in service did not confirm a second factor strong enough for this."
    ),
}


class SignInRefused(Exception):
    def __init__(self, reason: Refusal, detail: str = "") -> None:
        super().__init__(REFUSAL_MESSAGES[reason])
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SignInResult:
    user: User
    # False: the IdP's assurance is below the provider's minimum; Portcullis asks its own.
    verified: bool
    next_url: str


def assurance_of(*, acr: str | None, amr: list[str] | None) -> Assurance:
    methods = set(amr or [])
    if acr in PHISHING_RESISTANT_ACR or methods & PHISHING_RESISTANT_AMR:
        return Assurance.PHISHING_RESISTANT
    if methods & MULTI_FACTOR_AMR:
        return Assurance.MFA
    return Assurance.PASSWORD


def sign_in_start(
    *, request: HttpRequest, provider: IdentityProvider, redirect_uri: str, next_url: str
) -> str:
    """Where to send the browser; the state, nonce and PKCE verifier stay in its session."""
    url, pending = oidc.authorization_start(provider, redirect_uri=redirect_uri, next_url=next_url)
    waiting = dict(request.session.get(PENDING_KEY, {}))
    waiting[pending.state] = asdict(pending)
    request.session[PENDING_KEY] = dict(list(waiting.items())[-PENDING_MAX_COUNT:])
    return url


def _refuse(
    request: HttpRequest,
    provider: IdentityProvider,
    reason: Refusal,
    detail: str = "",
    *,
    step_up: bool = False,
) -> SignInRefused:
    # A refused step-up is a refused second factor of a signed-in person, not a sign-in.
    security_event_record(
        kind=Kind.OTP_FAILED if step_up else Kind.LOGIN_FAILED,
        request=request,
        user=request.user if step_up and isinstance(request.user, User) else None,
        severity=Severity.WARNING,
        detail={
            "method": "oidc_step_up" if step_up else "oidc",
            "idp": provider.slug,
            "refused": reason.value,
            "why": detail,
        },
    )
    return SignInRefused(reason, detail)


def sign_in_complete(
    *,
    request: HttpRequest,
    provider: IdentityProvider,
    redirect_uri: str,
    state: str,
    code: str,
    error: str,
) -> SignInResult:
    """Finish the IdP's redirect back: every check refuses and records, none trusts the URL."""
    pending, claims = _authorization_complete(
        request=request, provider=provider, redirect_uri=redirect_uri, state=state, code=code, error=error
    )
    return _sign_in(request=request, provider=provider, claims=claims, next_url=pending.next_url)


def _authorization_complete(
    *,
    request: HttpRequest,
    provider: IdentityProvider,
    redirect_uri: str,
    state: str,
    code: str,
    error: str,
    step_up: bool = False,
) -> tuple[oidc.PendingAuthorization, dict[str, Any]]:
    """The state (this browser's, used once), the code exchanged with its PKCE verifier and
    the ID token verified with its nonce: what a sign-in and a step-up both need."""
    waiting = dict(request.session.get(PENDING_KEY, {}))
    # Used once, whatever happens next: a replayed callback finds nothing.
    saved = waiting.pop(state, None) if state else None
    request.session[PENDING_KEY] = waiting
    if saved is None or saved["provider_id"] != provider.pk:
        raise _refuse(request, provider, Refusal.STATE, step_up=step_up)
    pending = oidc.PendingAuthorization(**saved)
    if time.time() - pending.started_at > PENDING_MAX_AGE_SECONDS:
        raise _refuse(request, provider, Refusal.EXPIRED_ATTEMPT, step_up=step_up)
    if error or not code:
        raise _refuse(request, provider, Refusal.IDP_ERROR, error[:100], step_up=step_up)
    try:
        raw = oidc.code_exchange(
            provider, code=code, code_verifier=pending.code_verifier, redirect_uri=redirect_uri
        )
        claims = oidc.id_token_verify(provider, raw, nonce=pending.nonce)
    except oidc.OidcError as refused:
        raise _refuse(request, provider, Refusal.UNVERIFIABLE, str(refused), step_up=step_up) from None
    return pending, claims


def _sign_in(
    *, request: HttpRequest, provider: IdentityProvider, claims: dict[str, Any], next_url: str
) -> SignInResult:
    now = time.time()
    auth_time = float(claims.get("auth_time") or claims["iat"])
    if now - auth_time > provider.max_authentication_age.total_seconds() + provider.clock_skew_seconds:
        raise _refuse(request, provider, Refusal.STALE_AUTHENTICATION)
    try:
        with transaction.atomic():
            user = _account_for(request=request, provider=provider, claims=claims)
            if not user.is_active or user.is_locked or user.is_service_account:
                raise SignInRefused(Refusal.ACCOUNT_UNUSABLE)
            groups_claim = claims.get(provider.groups_claim)
            idp_groups = {str(group) for group in groups_claim} if isinstance(groups_claim, list) else set()
            groups_sync(user=user, provider=provider, idp_groups=idp_groups, request=request)
    except SignInRefused as refused:
        # Recorded once the transaction has rolled back: inside it, the record would go too.
        raise _refuse(request, provider, refused.reason, refused.detail) from None
    acr = str(claims.get("acr") or "")
    amr = [str(method) for method in claims.get("amr") or [] if isinstance(method, str)]
    assurance = assurance_of(acr=acr, amr=amr)
    record = session_start(request=request, user=user)
    IdpSession.objects.create(
        session=record,
        provider=provider,
        subject=str(claims["sub"]),
        sid=str(claims.get("sid") or ""),
        acr=acr[:255],
        amr=amr,
        assurance=assurance,
        authenticated_at=datetime.fromtimestamp(auth_time, tz=UTC),
    )
    request.session[IDP_REAUTHENTICATE_AT_KEY] = auth_time + provider.max_authentication_age.total_seconds()
    verified = ASSURANCE_ORDER[assurance] >= ASSURANCE_ORDER[Assurance(provider.minimum_assurance)]
    if verified:
        device, _ = IdentityProviderDevice.objects.get_or_create(
            user=user, provider=provider, defaults={"name": provider.name[:64], "confirmed": True}
        )
        session_mark_verified(request, device)
        request.session[IDP_ASSURANCE_KEY] = assurance.value
    security_event_record(
        kind=Kind.LOGIN_SUCCEEDED,
        request=request,
        user=user,
        detail={
            "method": "oidc",
            "idp": provider.slug,
            "acr": acr,
            "amr": amr,
            "assurance": assurance.value,
            "second_factor": "idp" if verified else "portcullis",
        },
    )
    return SignInResult(user=user, verified=verified, next_url=next_url)


# --- Step-up through a fresh IdP sign-in ----------------------------------------------

# The action a step-up interrupted, kept while the person is at the IdP: {state, target,
# method, fields}. One at a time: a newer step-up replaces it.
STEP_UP_KEY = "portcullis_sso_step_up"
# The interrupted form's fields ride in the session: bounded, like any form post.
STEP_UP_MAX_FIELDS_BYTES = 64 * 1024


@dataclass(frozen=True)
class PendingAction:
    """The request a rule interrupted for a fresh second factor, to continue afterwards."""

    target: str
    method: str
    fields: list[tuple[str, str]]


class StepUpUnavailable(Exception):
    """This session cannot step up through the IdP (not opened by it, or too much to keep)."""


def step_up_start(
    *, request: HttpRequest, provider: IdentityProvider, redirect_uri: str, action: PendingAction
) -> str:
    """Where to send the browser for a fresh sign-in at the IdP (max_age=0, prompt=login);
    the interrupted action waits in the session."""
    if session_identity_provider(request.session.get(SESSION_ID_KEY)) != provider:
        raise StepUpUnavailable("This session was not opened through this identity provider.")
    if sum(len(name) + len(value) for name, value in action.fields) > STEP_UP_MAX_FIELDS_BYTES:
        raise StepUpUnavailable("This form is too large to continue after the IdP: confirm with a code.")
    url, pending = oidc.authorization_start(
        provider, redirect_uri=redirect_uri, next_url=action.target, reauthenticate=True
    )
    waiting = dict(request.session.get(PENDING_KEY, {}))
    waiting[pending.state] = asdict(pending)
    request.session[PENDING_KEY] = dict(list(waiting.items())[-PENDING_MAX_COUNT:])
    request.session[STEP_UP_KEY] = {"state": pending.state, **asdict(action)}
    return url


def step_up_pending(request: HttpRequest) -> bool:
    """Whether this signed-in browser waits for the IdP's answer to a step-up: then any
    redirect back is judged as that step-up (a forged one too), never as a new sign-in."""
    return request.user.is_authenticated and isinstance(request.session.get(STEP_UP_KEY), dict)


def step_up_complete(
    *,
    request: HttpRequest,
    provider: IdentityProvider,
    redirect_uri: str,
    state: str,
    code: str,
    error: str,
) -> PendingAction:
    """Finish a step-up at the IdP: verified like a sign-in, then the same person (`sub`),
    authenticated after the step-up began (within the clock skew), at least with a second
    factor and the provider's minimum assurance. Marks the step-up fresh as a TOTP code
    does and returns the action to continue."""
    saved = request.session[STEP_UP_KEY]
    if not state or saved.get("state") != state:
        # Not this step-up's answer: refused, and the real answer can still come.
        raise _refuse(request, provider, Refusal.STATE, step_up=True)
    del request.session[STEP_UP_KEY]
    pending, claims = _authorization_complete(
        request=request,
        provider=provider,
        redirect_uri=redirect_uri,
        state=state,
        code=code,
        error=error,
        step_up=True,
    )
    user = request.user
    if not isinstance(user, User):
        raise _refuse(request, provider, Refusal.OTHER_SUBJECT, step_up=True)
    linked = IdpSession.objects.filter(
        session_id=request.session.get(SESSION_ID_KEY), provider=provider
    ).first()
    subject = str(claims["sub"])
    bound = ExternalIdentity.objects.filter(provider=provider, subject=subject, user_id=user.pk).exists()
    if linked is None or linked.subject != subject or not bound:
        raise _refuse(request, provider, Refusal.OTHER_SUBJECT, subject[:100], step_up=True)
    auth_time = claims.get("auth_time")
    # max_age=0 and prompt=login asked for a sign-in now; an IdP that answered from its own
    # older session (or dropped the parameters) did not confirm anyone.
    if not isinstance(auth_time, int | float) or auth_time + provider.clock_skew_seconds < int(
        pending.started_at
    ):
        raise _refuse(request, provider, Refusal.STALE_AUTHENTICATION, str(auth_time), step_up=True)
    acr = str(claims.get("acr") or "")
    amr = [str(method) for method in claims.get("amr") or [] if isinstance(method, str)]
    assurance = assurance_of(acr=acr, amr=amr)
    # A step-up is a second factor: a password at the IdP is not one, whatever the minimum.
    needed = max(ASSURANCE_ORDER[Assurance.MFA], ASSURANCE_ORDER[Assurance(provider.minimum_assurance)])
    if ASSURANCE_ORDER[assurance] < needed:
        raise _refuse(request, provider, Refusal.WEAK_ASSURANCE, assurance.value, step_up=True)
    device, _ = IdentityProviderDevice.objects.get_or_create(
        user=user, provider=provider, defaults={"name": provider.name[:64], "confirmed": True}
    )
    session_mark_verified(request, device)
    request.session[IDP_ASSURANCE_KEY] = assurance.value
    request.session[IDP_REAUTHENTICATE_AT_KEY] = auth_time + provider.max_authentication_age.total_seconds()
    IdpSession.objects.filter(pk=linked.pk).update(
        sid=str(claims.get("sid") or linked.sid),
        acr=acr[:255],
        amr=amr,
        assurance=assurance,
        authenticated_at=datetime.fromtimestamp(auth_time, tz=UTC),
    )
    security_event_record(
        kind=Kind.OTP_SUCCEEDED,
        request=request,
        user=user,
        detail={
            "method": "oidc_step_up",
            "idp": provider.slug,
            "acr": acr,
            "amr": amr,
            "assurance": assurance.value,
        },
    )
    return PendingAction(
        target=saved["target"], method=saved["method"], fields=[(str(n), str(v)) for n, v in saved["fields"]]
    )


def _account_for(*, request: HttpRequest, provider: IdentityProvider, claims: dict[str, Any]) -> User:
    """The account bound to the IdP's subject. Never matched by email: an address an IdP
    lets people edit must not open someone else's account."""
    subject = str(claims["sub"])
    identity = (
        ExternalIdentity.objects.select_related("user").filter(provider=provider, subject=subject).first()
    )
    if identity is not None:
        return identity.user
    if not provider.allow_jit_provisioning:
        raise SignInRefused(Refusal.JIT_OFF, subject[:100])
    user = user_provision(provider=provider, subject=subject, claims=claims)
    security_event_record(
        kind=Kind.CHANGE_APPLIED,
        request=request,
        user=user,
        detail={"provisioned_by": provider.slug, "subject": subject},
    )
    return user


def user_provision(*, provider: IdentityProvider, subject: str, claims: dict[str, Any]) -> User:
    """A new account bound to the IdP's subject, with no usable password: it signs in
    through the IdP only."""
    base = str(claims.get("preferred_username") or claims.get("email") or subject)[:120]
    user = User(
        email=str(claims.get("email") or "")[:254],
        first_name=str(claims.get("given_name") or "")[:150],
        last_name=str(claims.get("family_name") or "")[:150],
    )
    user.set_unusable_password()
    for attempt in range(10):
        user.username = base if attempt == 0 else f"{base}-{attempt}"
        try:
            with transaction.atomic():
                user.save()
                break
        except IntegrityError:
            user.pk = None
    else:
        user.username = f"{provider.slug}-{subject}"[:150]
        user.save()
    ExternalIdentity.objects.create(provider=provider, subject=subject, user=user)
    return user


def groups_sync(
    *, user: User, provider: IdentityProvider, idp_groups: set[str], request: HttpRequest | None = None
) -> None:
    """Make the user's mapped teams and roles what the IdP says: the groups the provider's
    active mappings manage are added or removed; others (set by a supervisor) stay.

    Administrator is never given through a mapping, whatever a row says: the admin refuses
    such a mapping, and a row written around the admin is refused here too."""
    mappings = list(IdpGroupMapping.objects.filter(provider=provider, active=True).select_related("group"))
    forbidden = [m for m in mappings if m.group.name == roles.ADMINISTRATOR]
    if forbidden:
        security_event_record(
            kind=Kind.PRIVILEGE_DENIED,
            request=request,
            user=user,
            severity=Severity.CRITICAL,
            detail={"refused": "IdP group mapped to Administrator", "mappings": [m.pk for m in forbidden]},
        )
    usable = [m for m in mappings if m.group.name != roles.ADMINISTRATOR]
    managed = {m.group_id for m in usable}
    wanted = {m.group_id for m in usable if m.idp_group in idp_groups}
    current = set(user.groups.filter(pk__in=managed).values_list("pk", flat=True))
    added, removed = wanted - current, current - wanted
    if added:
        user.groups.add(*added)
    if removed:
        user.groups.remove(*removed)
    if added or removed:
        is_staff = user.groups.filter(name__in=STAFF_ROLES).exists()
        if is_staff != user.is_staff:
            user.is_staff = is_staff
            user.save(update_fields=["is_staff"])
        sockets_recheck(user_ids=[user.pk])
        security_event_record(
            kind=Kind.CHANGE_APPLIED,
            request=request,
            user=user,
            detail={
                "groups_synced_from": provider.slug,
                "added": sorted(Group.objects.filter(pk__in=added).values_list("name", flat=True)),
                "removed": sorted(Group.objects.filter(pk__in=removed).values_list("name", flat=True)),
            },
        )


def group_mapping_request(
    *, ctx: AccessContext, request: HttpRequest | None, mapping: IdpGroupMapping, reason: str
) -> supervision.Outcome:
    """Save a new mapping inactive and ask for it as a privilege change: it applies at once
    or after a second approval, as the approval rules say; a refusal leaves no mapping."""
    mapping.active = False
    mapping.save()
    try:
        # Not inside a transaction of ours: the refusal's security event must stay.
        return supervision.change_request(
            ctx=ctx,
            request=request,
            kind=ChangeKind.IDP_GROUP_MAPPING,
            summary=f"Map {mapping.provider.slug} group {mapping.idp_group} to {mapping.group.name}",
            reason=reason,
            payload={"mapping_id": mapping.pk, "group_id": mapping.group_id},
        )
    except supervision.SupervisionRefused:
        mapping.delete()
        raise


def backchannel_logout(*, provider: IdentityProvider, logout_token: str, request: HttpRequest) -> int:
    """End the sessions the IdP's logout token names (by its session id, or every session
    of the subject); open sockets close. Returns how many ended."""
    try:
        claims = oidc.logout_token_verify(provider, logout_token)
    except oidc.OidcError as refused:
        security_event_record(
            kind=Kind.SESSION_ENDED,
            request=request,
            severity=Severity.WARNING,
            detail={"method": "oidc_backchannel", "idp": provider.slug, "refused": str(refused)},
        )
        raise
    linked = IdpSession.objects.filter(provider=provider, session__ended_at__isnull=True)
    if claims.get("sid"):
        linked = linked.filter(sid=str(claims["sid"]))
    if claims.get("sub"):
        linked = linked.filter(subject=str(claims["sub"]))
    with transaction.atomic():
        rows = list(linked.select_related("session").values_list("session_id", "session__user_id"))
        count = UserSession.objects.filter(pk__in=[pk for pk, _ in rows], ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=UserSession.EndReason.IDP_LOGOUT
        )
        sockets_recheck(user_ids=[user_id for _, user_id in rows])
        security_event_record(
            kind=Kind.SESSION_ENDED,
            request=request,
            detail={
                "method": "oidc_backchannel",
                "idp": provider.slug,
                "reason": UserSession.EndReason.IDP_LOGOUT.value,
                "sessions": count,
            },
        )
    return count


def client_secrets_rotate() -> int:
    """Re-encrypt every IdP client secret under the newest key (reading decrypts with any
    configured key, saving encrypts with the first); returns the providers rewritten."""
    with transaction.atomic():
        providers = list(IdentityProvider.objects.select_for_update())
        for provider in providers:
            provider.save(update_fields=["client_secret"])
    return len(providers)
