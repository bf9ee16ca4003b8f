"""What the server verified of a passkey, shown on its owner's security page."""

from __future__ import annotations

from typing import Any

import pytest

from accounts import roles
from tests.passkeys.authenticator import SoftAuthenticator
from tests.passkeys.conftest import register

pytestmark = pytest.mark.django_db

# The software authenticator sends the all-zero AAGUID.
SOFT_AAGUID = "00000000-0000-0000-0000-000000000000"


def test_the_security_page_names_the_authenticator_its_aaguid_maps_to(
    make_user: Any, verified_client: Any, settings: Any
) -> None:
    client = verified_client(make_user(roles.AGENT))
    passkey = register(client, SoftAuthenticator(), name="desk key")
    assert passkey.aaguid == SOFT_AAGUID and not passkey.backed_up
    assert "Unknown authenticator" in client.get("/accounts/security/").content.decode()
    settings.PASSKEY_AUTHENTICATOR_NAMES = {SOFT_AAGUID: "Test key model"}
    page = client.get("/accounts/security/").content.decode()
    assert "Test key model" in page and "Bound to one device" in page
