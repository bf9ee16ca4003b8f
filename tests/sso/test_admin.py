"""The IdP configuration is the administrators' alone; its secret is written, never shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts import roles
from accounts.models import ChangeRequest, IdentityProvider, IdpGroupMapping, User

pytestmark = pytest.mark.django_db

SECRET = "the-client-secret-0123"


def _provider_form(**extra: str) -> dict[str, str]:
    return {
        "name": "Corp IdP",
        "slug": "corp",
        "enabled": "on",
        "issuer": "https://idp.corp.test",
        "client_id": "portcullis",
        "client_secret": SECRET,
        "scopes": "openid email profile groups",
        "groups_claim": "groups",
        "minimum_assurance": "totp",
        "clock_skew_seconds": "60",
        "max_authentication_age": "12:00:00",
        **extra,
    }


def test_a_supervisor_cannot_see_or_configure_identity_providers(
    make_user: Callable[..., User], verified_client: Callable[[User], Client]
) -> None:
    client = verified_client(make_user(roles.SUPERVISOR, is_staff=True))
    assert client.get("/admin/accounts/identityprovider/").status_code == 403
    assert client.post("/admin/accounts/identityprovider/add/", _provider_form()).status_code == 403
    assert client.get("/admin/accounts/idpgroupmapping/add/").status_code == 403
    assert not IdentityProvider.objects.exists()


def test_an_administrator_adds_a_provider_whose_secret_is_never_shown(
    make_user: Callable[..., User], verified_client: Callable[[User], Client]
) -> None:
    client = verified_client(make_user(roles.ADMINISTRATOR, is_staff=True, is_superuser=True))
    assert client.post("/admin/accounts/identityprovider/add/", _provider_form()).status_code == 302
    provider = IdentityProvider.objects.get()
    assert provider.client_secret == SECRET
    page = client.get(f"/admin/accounts/identityprovider/{provider.pk}/change/").content.decode()
    assert SECRET not in page
    # Tokens travel to the issuer: plain HTTP is refused beyond this machine.
    response = client.post(
        "/admin/accounts/identityprovider/add/", _provider_form(slug="plain", issuer="http://idp.corp.test")
    )
    assert response.status_code == 200 and "must use https" in response.content.decode()


def test_a_mapping_added_in_the_admin_waits_and_administrator_is_not_offered(
    make_user: Callable[..., User], verified_client: Callable[[User], Client], settings: Any
) -> None:
    client = verified_client(make_user(roles.ADMINISTRATOR, is_staff=True, is_superuser=True))
    provider = IdentityProvider.objects.create(
        name="Corp",
        slug="corp",
        issuer="https://idp.corp.test",
        client_id="c",
        client_secret="s",
    )
    form = client.get("/admin/accounts/idpgroupmapping/add/").content.decode()
    administrator = Group.objects.get(name=roles.ADMINISTRATOR)
    assert f'value="{administrator.pk}"' not in form

    agent = Group.objects.get(name=roles.AGENT)
    response = client.post(
        "/admin/accounts/idpgroupmapping/add/",
        {"provider": provider.pk, "idp_group": "support", "group": agent.pk, "reason": "support desk"},
    )
    assert response.status_code == 302
    assert not IdpGroupMapping.objects.get().active
    assert ChangeRequest.objects.get().state == ChangeRequest.State.PENDING
    forced = client.post(
        "/admin/accounts/idpgroupmapping/add/",
        {"provider": provider.pk, "idp_group": "admins", "group": administrator.pk, "reason": "x"},
    )
    assert forced.status_code == 200
    assert not IdpGroupMapping.objects.filter(group=administrator).exists()


def test_rotate_field_keys_re_encrypts_the_client_secret(settings: Any) -> None:
    from io import StringIO

    from cryptography.fernet import Fernet
    from django.core.management import call_command
    from django.db import connection

    old_key, new_key = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    provider = IdentityProvider.objects.create(
        name="Corp", slug="corp", issuer="https://idp.corp.test", client_id="c", client_secret=SECRET
    )

    def stored() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT client_secret FROM accounts_identityprovider WHERE id = %s", [provider.pk])
            return str(cursor.fetchone()[0])

    before = stored()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    out = StringIO()
    call_command("rotate_field_keys", stdout=out)
    assert "1 identity provider secret(s) re-encrypted" in out.getvalue()
    assert stored() != before
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert IdentityProvider.objects.get(pk=provider.pk).client_secret == SECRET
