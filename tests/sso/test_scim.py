"""SCIM 2.0 provisioning with the IdP's scoped, expiring, hashed token: users created,
updated and deactivated, group memberships turned into teams and roles, and every way in
without the right token refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from accounts import roles, tokens
from accounts.models import (
    ApiToken,
    ExternalIdentity,
    IdentityProvider,
    IdpGroupMapping,
    ScimGroup,
    User,
    UserSession,
)
from audit.models import SecurityEvent
from tests.conftest import start_session

pytestmark = pytest.mark.django_db

SCIM = "application/scim+json"


@pytest.fixture
def provider(db: Any) -> IdentityProvider:
    return IdentityProvider.objects.create(
        name="Corp IdP",
        slug="corp",
        enabled=True,
        issuer="https://idp.corp.test",
        client_id="portcullis",
        client_secret="secret",
    )


@pytest.fixture
def scim_token(provider: IdentityProvider, make_user: Callable[..., User]) -> str:
    account = make_user(username="scim-corp", enrolled=False, is_service_account=True)
    issued = tokens.token_issue(
        name="Corp SCIM",
        user=account,
        inbox_ids=[],
        can_write=True,
        expires_at=timezone.now() + timedelta(days=30),
        scim_provider=provider,
    )
    return issued.plaintext


def scim(token: str | None) -> Client:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client(**headers)


def _send(client: Client, method: str, path: str, body: Any = None) -> Any:
    call = getattr(client, method)
    if body is None:
        return call(f"/api/scim/v2/{path}")
    return call(f"/api/scim/v2/{path}", data=json.dumps(body), content_type=SCIM)


def _new_user(client: Client, user_name: str = "dana", external_id: str = "idp-dana") -> dict[str, Any]:
    response = _send(
        client,
        "post",
        "Users",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "externalId": external_id,
            "name": {"givenName": "Dana", "familyName": "Doe"},
            "emails": [{"value": f"{user_name}@corp.test", "primary": True}],
            "active": True,
        },
    )
    assert response.status_code == 201, response.content
    return dict(response.json())


def test_without_a_token_or_with_a_wrong_one_scim_answers_401(scim_token: str) -> None:
    wrong = scim_token[:-4] + "AAAA"
    for client in (scim(None), scim(wrong), scim("not-a-token")):
        response = _send(client, "get", "Users")
        assert response.status_code == 401
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.API_TOKEN_REFUSED).count() == 2


def test_an_expired_or_revoked_scim_token_answers_401(scim_token: str) -> None:
    token = ApiToken.objects.get(scim_provider__isnull=False)
    token.expires_at = timezone.now() - timedelta(seconds=1)
    token.save(update_fields=["expires_at"])
    assert _send(scim(scim_token), "get", "Users").status_code == 401


def test_an_inbox_api_token_cannot_provision_and_a_scim_token_cannot_read_the_inbox(
    scim_token: str, make_user: Callable[..., User]
) -> None:
    integration = make_user(username="crm", enrolled=False, is_service_account=True)
    api_token = tokens.token_issue(
        name="CRM",
        user=integration,
        inbox_ids=[],
        can_write=True,
        expires_at=timezone.now() + timedelta(days=1),
    ).plaintext
    assert _send(scim(api_token), "get", "Users").status_code == 403
    assert scim(scim_token).get("/api/v1/conversations/").status_code == 403


def test_a_verified_supervisor_session_is_not_a_scim_credential(
    scim_token: str, make_user: Callable[..., User]
) -> None:
    client = Client()
    start_session(client, make_user(roles.ADMINISTRATOR, is_staff=True), verified=True)
    assert _send(client, "get", "Users").status_code == 401


def test_create_find_and_update_a_user(scim_token: str, provider: IdentityProvider) -> None:
    client = scim(scim_token)
    created = _new_user(client)

    user = User.objects.get(pk=int(created["id"]))
    assert user.username == "dana" and user.email == "dana@corp.test" and not user.has_usable_password()
    assert ExternalIdentity.objects.get(user=user).subject == "idp-dana"
    found = client.get("/api/scim/v2/Users", {"filter": 'userName eq "dana"'}).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["externalId"] == "idp-dana"
    assert _send(client, "post", "Users", {"userName": "dana", "externalId": "other"}).status_code == 409

    patched = _send(
        client,
        "patch",
        f"Users/{user.pk}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "name.familyName", "value": "Roe"}],
        },
    )
    assert patched.status_code == 200 and patched.json()["name"]["familyName"] == "Roe"
    replaced = _send(client, "put", f"Users/{user.pk}", {"userName": "dana.roe", "emails": []})
    assert replaced.status_code == 200 and User.objects.get(pk=user.pk).username == "dana.roe"


def test_deactivation_ends_every_session_and_reactivation_needs_a_supervisor(scim_token: str) -> None:
    client = scim(scim_token)
    user = User.objects.get(pk=int(_new_user(client)["id"]))
    browser = Client()
    start_session(browser, user, verified=False)

    # Entra ID's spelling: op "Replace", the value a string.
    response = _send(
        client,
        "patch",
        f"Users/{user.pk}",
        {"Operations": [{"op": "Replace", "path": "active", "value": "False"}]},
    )

    assert response.status_code == 200 and response.json()["active"] is False
    user.refresh_from_db()
    assert not user.is_active
    assert UserSession.objects.get(user=user).end_reason == UserSession.EndReason.DEPROVISIONED
    again = _send(
        client, "patch", f"Users/{user.pk}", {"Operations": [{"op": "replace", "value": {"active": True}}]}
    )
    assert again.status_code == 403
    assert not User.objects.get(pk=user.pk).is_active
    assert _send(client, "delete", f"Users/{user.pk}").status_code == 204
    assert User.objects.filter(pk=user.pk).exists()


def test_a_stolen_scim_token_reaches_no_local_account(
    scim_token: str, make_user: Callable[..., User]
) -> None:
    administrator = make_user(roles.ADMINISTRATOR, username="root")
    client = scim(scim_token)
    off = {"Operations": [{"op": "replace", "path": "active", "value": False}]}
    assert _send(client, "patch", f"Users/{administrator.pk}", off).status_code == 404
    assert _send(client, "delete", f"Users/{administrator.pk}").status_code == 404
    assert client.get("/api/scim/v2/Users", {"filter": 'userName eq "root"'}).json()["totalResults"] == 0
    assert User.objects.get(pk=administrator.pk).is_active
    # Nor can it add a local account to a group.
    response = _send(
        client, "post", "Groups", {"displayName": "x", "members": [{"value": str(administrator.pk)}]}
    )
    assert response.status_code == 400


def test_group_membership_maps_to_roles_and_removal_ends_sessions(
    scim_token: str, provider: IdentityProvider
) -> None:
    agent = Group.objects.get(name=roles.AGENT)
    administrator = Group.objects.get(name=roles.ADMINISTRATOR)
    IdpGroupMapping.objects.create(provider=provider, idp_group="support", group=agent, active=True)
    IdpGroupMapping.objects.create(provider=provider, idp_group="admins", group=administrator, active=True)
    client = scim(scim_token)
    user = User.objects.get(pk=int(_new_user(client)["id"]))
    member = [{"value": str(user.pk)}]

    support = _send(client, "post", "Groups", {"displayName": "support", "members": member}).json()
    _send(client, "post", "Groups", {"displayName": "admins", "members": member})

    assert set(user.groups.values_list("name", flat=True)) == {roles.AGENT}
    assert not User.objects.get(pk=user.pk).is_staff
    browser = Client()
    start_session(browser, user, verified=False)

    removed = _send(
        client,
        "patch",
        f"Groups/{support['id']}",
        {"Operations": [{"op": "remove", "path": f'members[value eq "{user.pk}"]'}]},
    )

    assert removed.status_code == 200 and removed.json()["members"] == []
    assert not user.groups.exists()
    assert UserSession.objects.get(user=user).end_reason == UserSession.EndReason.DEPROVISIONED
    assert ScimGroup.objects.filter(display_name="support").exists()


def test_bad_input_is_a_scim_400_never_a_500(scim_token: str) -> None:
    client = scim(scim_token)
    assert client.post("/api/scim/v2/Users", data="{not json", content_type=SCIM).status_code == 400
    assert _send(client, "post", "Users", ["a list"]).status_code == 400
    assert _send(client, "post", "Users", {"userName": "x" * 400, "externalId": "e"}).status_code == 400
    assert _send(client, "post", "Users", {"userName": "bad name!", "externalId": "e"}).status_code == 400
    assert client.get("/api/scim/v2/Users", {"filter": 'password eq "x"'}).status_code == 400
    assert client.get("/api/scim/v2/Users", {"startIndex": "one"}).status_code == 400
    assert _send(client, "get", "Users/abc").status_code == 404
    assert _send(client, "patch", "Users/1", {"Operations": "nope"}).status_code in (400, 404)
    user_id = _new_user(client)["id"]
    assert (
        _send(
            client, "patch", f"Users/{user_id}", {"Operations": [{"op": "remove", "path": "x"}]}
        ).status_code
        == 400
    )
    assert _send(client, "patch", f"Users/{user_id}", {"Operations": "nope"}).status_code == 400
    assert _send(client, "post", "Groups", {"displayName": ""}).status_code == 400


def test_deactivation_revokes_the_tokens_set_to_go_with_the_person(
    scim_token: str, make_user: Callable[..., User]
) -> None:
    client = scim(scim_token)
    user = User.objects.get(pk=int(_new_user(client)["id"]))
    crm = make_user(username="crm-of-dana", enrolled=False, is_service_account=True)
    expires = timezone.now() + timedelta(days=30)
    theirs = tokens.token_issue(
        name="Dana's CRM", user=crm, inbox_ids=[], can_write=False, expires_at=expires, revoked_with=user
    )
    # A token not set to go with the person stays: revocation is where configured only.
    shared = tokens.token_issue(name="Team CRM", user=crm, inbox_ids=[], can_write=False, expires_at=expires)
    assert scim(theirs.plaintext).get("/api/v1/conversations/").status_code == 200

    with (
        mock.patch("accounts.scim.services.tokens_revoke", side_effect=RuntimeError("database gone")),
        pytest.raises(RuntimeError),
    ):
        _send(
            client,
            "patch",
            f"Users/{user.pk}",
            {"Operations": [{"op": "replace", "value": {"active": False}}]},
        )
    # One transaction: a revocation that fails leaves the person active, not half offboarded.
    assert User.objects.get(pk=user.pk).is_active

    response = _send(
        client, "patch", f"Users/{user.pk}", {"Operations": [{"op": "replace", "value": {"active": False}}]}
    )

    assert response.status_code == 200
    assert ApiToken.objects.get(pk=theirs.token.pk).revoked_at is not None
    assert ApiToken.objects.get(pk=shared.token.pk).revoked_at is None
    refused = scim(theirs.plaintext).get("/api/v1/conversations/")
    assert refused.status_code == 401
    assert scim(shared.plaintext).get("/api/v1/conversations/").status_code == 200
    revoked = SecurityEvent.objects.get(kind=SecurityEvent.Kind.API_TOKEN_REVOKED)
    assert revoked.detail["token_id"] == theirs.token.pk
    deactivated = SecurityEvent.objects.get(
        kind=SecurityEvent.Kind.CHANGE_APPLIED, detail__scim="deactivated"
    )
    assert deactivated.detail["tokens_revoked"] == 1
