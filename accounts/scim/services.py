"""Writes for SCIM 2.0 provisioning (RFC 7643/7644): the IdP creates, updates and
deactivates the accounts it vouches for and sets their group memberships.

A provisioning token reaches only its own IdP's accounts (those bound by an
`ExternalIdentity`), never a local one. Deactivation and losing a mapped team end every
session at once, and open sockets close (the same session end every other path uses).
Teams and roles come from groups only through the provider's approved mappings, so SCIM
can never make anyone an administrator either.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import ApiToken, ExternalIdentity, IdentityProvider, ScimGroup, User, UserSession
from accounts.services import sessions_end_all
from accounts.sso.services import groups_sync
from accounts.tokens import tokens_revoke
from audit.services import Kind, Severity, security_event_record

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
# The one filter IdPs send before creating: `attribute eq "value"`.
_EQUALS_FILTER = re.compile(r'^\s*(?P<attribute>[A-Za-z.]+)\s+eq\s+"(?P<value>(?:[^"\\]|\\.)*)"\s*$', re.I)
_MEMBER_PATH = re.compile(r'^members\[value eq "(?P<value>[^"]+)"\]$', re.I)


class ScimError(Exception):
    """Answered as a SCIM error: status, scimType (RFC 7644 3.12) and detail."""

    def __init__(self, status: int, detail: str, scim_type: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.scim_type = scim_type

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": str(self)}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


def equality_filter(raw: str | None, allowed: frozenset[str]) -> tuple[str, str] | None:
    if not raw:
        return None
    match = _EQUALS_FILTER.match(raw)
    if match is None or match["attribute"] not in allowed:
        raise ScimError(
            400, f'Only {" or ".join(sorted(allowed))} eq "…" filters are supported.', "invalidFilter"
        )
    return match["attribute"], match["value"].replace('\\"', '"')


# --- Users ------------------------------------------------------------------------------


def provisioned_users(provider: IdentityProvider) -> QuerySet[User]:
    """The accounts this IdP provisions: bound to it, never a local account."""
    return User.objects.filter(
        pk__in=ExternalIdentity.objects.filter(provider=provider).values("user_id"), is_service_account=False
    )


def user_get(provider: IdentityProvider, user_id: str) -> User:
    user = provisioned_users(provider).filter(pk=int(user_id)).first() if user_id.isdigit() else None
    if user is None:
        raise ScimError(404, "No such user.")
    return user


def _text(value: Any, field: str, *, limit: int, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise ScimError(400, f"{field} is required.", "invalidValue")
        return ""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise ScimError(400, f"{field} must be text of at most {limit} characters.", "invalidValue")
    return value


def _active(value: Any) -> bool:
    # Entra ID sends the string "False" in PATCH operations.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ScimError(400, "active must be true or false.", "invalidValue")


def _primary_email(emails: Any) -> str:
    if not isinstance(emails, list):
        raise ScimError(400, "emails must be a list.", "invalidValue")
    values = [e for e in emails if isinstance(e, dict) and isinstance(e.get("value"), str)]
    chosen = next((e for e in values if e.get("primary")), values[0] if values else None)
    return _text(chosen["value"], "emails.value", limit=254) if chosen else ""


def _user_attributes(user: User, attributes: dict[str, Any]) -> bool | None:
    """Set what the payload names; returns the `active` value it asks for, if any."""
    active: bool | None = None
    for key, value in attributes.items():
        if key == "userName":
            user.username = _text(value, "userName", limit=150, required=True)
        elif key == "name" and isinstance(value, dict):
            _user_attributes(user, {f"name.{part}": text for part, text in value.items()})
        elif key == "name.givenName":
            user.first_name = _text(value, key, limit=150)
        elif key == "name.familyName":
            user.last_name = _text(value, key, limit=150)
        elif key == "emails":
            user.email = _primary_email(value)
        elif key == "active":
            active = _active(value)
        # Other attributes (displayName, locale, schemas, meta, externalId: fixed at creation)
        # are not kept.
    return active


def _save_user(user: User) -> None:
    if User.objects.filter(username__iexact=user.username).exclude(pk=user.pk).exists():
        raise ScimError(409, "That userName is taken.", "uniqueness")
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as error:
        raise ScimError(400, "; ".join(error.messages), "invalidValue") from None
    user.save()


def _record(
    request: HttpRequest | None, user: User, action: str, provider: IdentityProvider, **detail: Any
) -> None:
    security_event_record(
        kind=Kind.CHANGE_APPLIED,
        request=request,
        user=user,
        severity=Severity.WARNING if action == "deactivated" else Severity.INFO,
        detail={"scim": action, "idp": provider.slug, **detail},
    )


def user_create(*, provider: IdentityProvider, data: dict[str, Any], request: HttpRequest | None) -> User:
    subject = _text(data.get("externalId") or data.get("userName"), "externalId", limit=255, required=True)
    if ExternalIdentity.objects.filter(provider=provider, subject=subject).exists():
        raise ScimError(409, "A user with that externalId exists.", "uniqueness")
    user = User()
    # No password: the account signs in through the IdP only.
    user.set_unusable_password()
    with transaction.atomic():
        active = _user_attributes(user, data)
        user.is_active = True if active is None else active
        _save_user(user)
        ExternalIdentity.objects.create(provider=provider, subject=subject, user=user)
        _record(request, user, "created", provider, subject=subject)
    return user


def user_update(
    *, provider: IdentityProvider, user: User, attributes: dict[str, Any], request: HttpRequest | None
) -> User:
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        was_active = user.is_active
        active = _user_attributes(user, attributes)
        if active is True and not was_active:
            # A stolen provisioning token must not bring offboarded people back: reactivation
            # is a privilege change a supervisor approves (four eyes).
            raise ScimError(403, "Reactivating an account needs a supervisor's approval in Portcullis.")
        if active is False:
            user.is_active = False
        _save_user(user)
        if active is False and was_active:
            ended = sessions_end_all(user=user, reason=UserSession.EndReason.DEPROVISIONED)
            # In this transaction: no moment where the person is gone but their integration
            # still reads (a token set to be revoked with them, accounts.tokens).
            revoked = tokens_revoke(
                tokens=ApiToken.objects.filter(revoked_with=user), by=None, request=request
            )
            _record(request, user, "deactivated", provider, sessions=ended, tokens_revoked=revoked)
        else:
            _record(request, user, "updated", provider)
    return user


def patch_to_attributes(operations: Any) -> dict[str, Any]:
    """A User PatchOp as the attributes it sets (add and replace; remove is refused)."""
    if not isinstance(operations, list) or not operations:
        raise ScimError(400, "Operations must be a non-empty list.", "invalidSyntax")
    attributes: dict[str, Any] = {}
    for operation in operations:
        if not isinstance(operation, dict):
            raise ScimError(400, "Each operation must be an object.", "invalidSyntax")
        op = str(operation.get("op", "")).lower()
        path, value = operation.get("path"), operation.get("value")
        if op not in ("add", "replace"):
            raise ScimError(400, "Only add and replace operations are supported on users.", "invalidSyntax")
        if path is None:
            if not isinstance(value, dict):
                raise ScimError(400, "An operation without a path needs an object value.", "invalidSyntax")
            attributes.update(value)
        elif isinstance(path, str) and path.lower().startswith("emails"):
            attributes["emails"] = [{"value": value, "primary": True}] if isinstance(value, str) else value
        elif isinstance(path, str):
            attributes[path] = value
        else:
            raise ScimError(400, "path must be text.", "invalidPath")
    return attributes


def user_resource(user: User, subject: str, location: str) -> dict[str, Any]:
    return {
        "schemas": [USER_SCHEMA],
        "id": str(user.pk),
        "externalId": subject,
        "userName": user.username,
        "name": {"givenName": user.first_name, "familyName": user.last_name},
        "emails": [{"value": user.email, "primary": True}] if user.email else [],
        "active": user.is_active,
        "meta": {"resourceType": "User", "created": user.date_joined.isoformat(), "location": location},
    }


# --- Groups -----------------------------------------------------------------------------


def group_get(provider: IdentityProvider, group_id: str) -> ScimGroup:
    group = (
        ScimGroup.objects.filter(provider=provider, pk=int(group_id)).first() if group_id.isdigit() else None
    )
    if group is None:
        raise ScimError(404, "No such group.")
    return group


def _member_users(provider: IdentityProvider, members: Any) -> list[User]:
    if not isinstance(members, list):
        raise ScimError(400, "members must be a list.", "invalidValue")
    ids = [str(m.get("value", "")) if isinstance(m, dict) else "" for m in members]
    users = list(provisioned_users(provider).filter(pk__in=[int(i) for i in ids if i.isdigit()]))
    if len(users) != len(set(ids)):
        raise ScimError(400, "A member is not a user of this identity provider.", "invalidValue")
    return users


def _memberships_apply(
    *, provider: IdentityProvider, users: set[User], request: HttpRequest | None, reason: str
) -> None:
    """Each affected user's mapped teams and roles follow their SCIM groups. Losing one
    ends their sessions: access is withdrawn now, not at the next sign-in."""
    for user in users:
        names = set(
            ScimGroup.objects.filter(provider=provider, members=user).values_list("display_name", flat=True)
        )
        before = set(user.groups.values_list("pk", flat=True))
        groups_sync(user=user, provider=provider, idp_groups=names, request=request)
        if before - set(user.groups.values_list("pk", flat=True)):
            ended = sessions_end_all(user=user, reason=UserSession.EndReason.DEPROVISIONED)
            _record(request, user, "team_removed", provider, sessions=ended, why=reason)


def group_create(
    *, provider: IdentityProvider, data: dict[str, Any], request: HttpRequest | None
) -> ScimGroup:
    name = _text(data.get("displayName"), "displayName", limit=255, required=True)
    members = _member_users(provider, data.get("members", []))
    with transaction.atomic():
        if ScimGroup.objects.filter(provider=provider, display_name=name).exists():
            raise ScimError(409, "A group with that displayName exists.", "uniqueness")
        group = ScimGroup.objects.create(
            provider=provider,
            display_name=name,
            external_id=_text(data.get("externalId"), "externalId", limit=255),
        )
        group.members.set(members)
        _memberships_apply(provider=provider, users=set(members), request=request, reason="group created")
    return group


def group_patch(
    *, provider: IdentityProvider, group: ScimGroup, operations: Any, request: HttpRequest | None
) -> ScimGroup:
    if not isinstance(operations, list) or not operations:
        raise ScimError(400, "Operations must be a non-empty list.", "invalidSyntax")
    with transaction.atomic():
        group = ScimGroup.objects.select_for_update().get(pk=group.pk)
        affected = set(group.members.all())
        for operation in operations:
            if not isinstance(operation, dict):
                raise ScimError(400, "Each operation must be an object.", "invalidSyntax")
            _group_operation(provider, group, operation)
        group.save()
        affected |= set(group.members.all())
        _memberships_apply(provider=provider, users=affected, request=request, reason="group changed")
    return group


def _group_operation(provider: IdentityProvider, group: ScimGroup, operation: dict[str, Any]) -> None:
    op = str(operation.get("op", "")).lower()
    path = str(operation.get("path") or "")
    value = operation.get("value")
    member_path = _MEMBER_PATH.match(path)
    if op == "remove" and member_path:
        group.members.remove(*provisioned_users(provider).filter(pk=int(member_path["value"])))
    elif path.lower() == "members" and op in ("add", "replace", "remove"):
        users = _member_users(provider, value if value is not None else [])
        if op == "add":
            group.members.add(*users)
        elif op == "remove":
            group.members.remove(*(users or list(group.members.all())))
        else:
            group.members.set(users)
    elif op == "replace" and (path == "displayName" or (not path and isinstance(value, dict))):
        name = value if path else value.get("displayName")  # type: ignore[union-attr]  # dict checked above
        group.display_name = _text(name, "displayName", limit=255, required=True)
    else:
        raise ScimError(400, "Unsupported group operation.", "invalidPath")


def group_delete(*, provider: IdentityProvider, group: ScimGroup, request: HttpRequest | None) -> None:
    with transaction.atomic():
        members = set(group.members.all())
        group.delete()
        _memberships_apply(provider=provider, users=members, request=request, reason="group deleted")


def group_resource(group: ScimGroup, location: str) -> dict[str, Any]:
    return {
        "schemas": [GROUP_SCHEMA],
        "id": str(group.pk),
        "externalId": group.external_id,
        "displayName": group.display_name,
        "members": [{"value": str(user.pk), "display": user.username} for user in group.members.all()],
        "meta": {"resourceType": "Group", "created": group.created_at.isoformat(), "location": location},
    }
