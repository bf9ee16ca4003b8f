"""Passkeys registered and used over HTTP with the software authenticator."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import Passkey, User
from tests.passkeys.authenticator import SoftAuthenticator, b64url

# The Django test client's host: the relying party its requests name.
ORIGIN = "http://testserver"
# Fixtures of other suites these tests reuse: the inbox segments, sessions bound to a device
# key, a chat inbox and the cleanup of sockets a test left open.
from tests.devices.conftest import bound_client  # noqa: E402, F401
from tests.inbox.conftest import segments  # noqa: E402, F401
from tests.livechat.conftest import chat, closed_sockets  # noqa: E402, F401


@pytest.fixture(autouse=True)
def fresh_throttles() -> None:
    cache.clear()


def age_verification(client: Client, seconds: float = 3600) -> None:
    """Make the session's second factor stale (older than STEP_UP_MAX_AGE)."""
    session = client.session
    session["portcullis_otp_verified_at"] = time.time() - seconds
    session.save()


def register(client: Client, authenticator: SoftAuthenticator, *, name: str = "laptop") -> Passkey:
    options = client.post("/accounts/passkeys/registration-options/").json()
    answer = authenticator.create(options, origin=ORIGIN)
    response = client.post("/accounts/passkeys/add/", {"name": name, "credential": answer})
    assert response.status_code == 302, response.content.decode()[:2000]
    return Passkey.objects.get(credential_id=b64url(authenticator.credential_id))


@pytest.fixture
def with_passkey(verified_client: Callable[[User], Client]) -> Callable[[User], SoftAuthenticator]:
    def make(user: User) -> SoftAuthenticator:
        authenticator = SoftAuthenticator()
        register(verified_client(user), authenticator)
        return authenticator

    return make
