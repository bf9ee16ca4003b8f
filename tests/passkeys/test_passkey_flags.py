"""What a passkey proved, kept with the session it verified: device-bound or synced, user
verification, the AAGUID — and read by the policy as `passkey_bound` or `passkey`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory
from django_otp import DEVICE_ID_SESSION_KEY

from accounts import roles
from accounts.models import Passkey, User
from accounts.services import PASSKEY_FLAGS_KEY
from audit.models import RuleDecision
from inbox.models import PolicyRule
from inbox.policy import AccessContext, rules
from tests.conftest import start_session
from tests.inbox.conftest import Segments
from tests.inbox.test_rules import compiled
from tests.passkeys.authenticator import SoftAuthenticator
from tests.passkeys.conftest import ORIGIN, register

pytestmark = pytest.mark.django_db

SOFT_AAGUID = "00000000-0000-0000-0000-000000000000"


def sign_in(user: User, authenticator: SoftAuthenticator) -> tuple[Client, Any]:
    """Password done, then the passkey as the second step."""
    client = Client()
    start_session(client, user, verified=False)
    options = client.post("/accounts/passkeys/assertion-options/").json()
    answer = authenticator.get(options, origin=ORIGIN)
    return client, client.post("/accounts/verify/", {"passkey_assertion": answer})


def enrolled(
    verified_client: Callable[[User], Client], user: User, authenticator: SoftAuthenticator
) -> Passkey:
    return register(verified_client(user), authenticator)


def context_of(user: User, session: dict[str, Any]) -> AccessContext:
    request = RequestFactory().get("/")
    request.user = user
    store = SessionStore()
    store.update(session)
    request.session = store
    return AccessContext.from_request(request)


def test_a_device_bound_passkey_sign_in_keeps_its_flags_and_reads_as_passkey_bound(
    make_user: Any, verified_client: Any
) -> None:
    user = make_user(roles.AGENT)
    passkey = enrolled(verified_client, user, authenticator := SoftAuthenticator())
    client, verified = sign_in(user, authenticator)
    assert verified.status_code == 302
    assert client.session[PASSKEY_FLAGS_KEY] == {
        "device": passkey.persistent_id,
        "device_bound": True,
        "user_verified": True,
        "aaguid": SOFT_AAGUID,
    }
    assert context_of(user, dict(client.session.items())).authenticator == "passkey_bound"


def test_a_synced_passkey_reads_as_passkey_and_is_recorded_as_synced(
    segments: Segments, verified_client: Any
) -> None:
    rule = PolicyRule.objects.create(
        name="Billing needs a device-bound passkey", mode="enforce", required_authenticator="passkey_bound"
    )
    rule.inboxes.set([segments.billing])
    agent = segments.billing_agent
    passkey = enrolled(
        verified_client, agent, phone := SoftAuthenticator(backup_eligible=True, backed_up=True)
    )
    assert passkey.device_type == "multi_device" and passkey.backed_up and not passkey.is_device_bound
    client, verified = sign_in(agent, phone)
    assert verified.status_code == 302 and client.session[PASSKEY_FLAGS_KEY]["device_bound"] is False
    assert client.get(f"/conversations/{segments.billing_conversations[0].pk}/").status_code == 404
    # An enforced deny closes the inbox for the person's lists: recorded once, as such.
    (decision,) = RuleDecision.objects.filter(rule_id=rule.pk)
    assert decision.outcome == "denied" and decision.inputs["authenticator"] == "passkey (synced)"


def test_a_code_step_up_after_a_passkey_takes_the_passkeys_flags_away(
    segments: Segments, verified_client: Any, totp: Any
) -> None:
    """The flags belong to the factor that verified the session: a code given later (a
    thief who read it off a phished page) does not inherit the passkey's strength."""
    rule = PolicyRule.objects.create(
        name="Billing needs a device-bound passkey", mode="enforce", required_authenticator="passkey_bound"
    )
    rule.inboxes.set([segments.billing])
    agent = segments.billing_agent
    enrolled(verified_client, agent, authenticator := SoftAuthenticator())
    client, _ = sign_in(agent, authenticator)
    page = f"/conversations/{segments.billing_conversations[0].pk}/"
    assert client.get(page).status_code == 200
    step_up = client.post("/accounts/step-up/", {"token": totp(agent).now(), "step_up_next": page})
    assert step_up.status_code == 303
    assert PASSKEY_FLAGS_KEY not in client.session
    assert client.session[DEVICE_ID_SESSION_KEY].startswith("otp_totp.")
    assert client.get(page).status_code == 404


def test_an_assertion_without_user_verification_is_refused(make_user: Any, verified_client: Any) -> None:
    """Touching a key is presence, not the person: an answer without UV verifies nothing."""
    user = make_user(roles.AGENT)
    enrolled(verified_client, user, authenticator := SoftAuthenticator())
    authenticator.user_verified = False
    client, refused = sign_in(user, authenticator)
    assert refused.status_code == 400
    assert DEVICE_ID_SESSION_KEY not in client.session and PASSKEY_FLAGS_KEY not in client.session


def test_the_policy_reads_only_flags_of_the_verifying_passkey_and_only_with_uv(make_user: Any) -> None:
    user = make_user(roles.AGENT)
    bound = {"device": "accounts.passkey/7", "device_bound": True, "user_verified": True, "aaguid": ""}
    verified_by_7 = {DEVICE_ID_SESSION_KEY: "accounts.passkey/7"}
    assert context_of(user, {**verified_by_7, PASSKEY_FLAGS_KEY: bound}).authenticator == "passkey_bound"
    without_uv = context_of(user, {**verified_by_7, PASSKEY_FLAGS_KEY: {**bound, "user_verified": False}})
    assert without_uv.authenticator == "passkey"
    assert without_uv.authenticator_input == "passkey (no user verification)"
    # Flags another passkey left behind (or written for another device) count for nothing.
    other = context_of(user, {DEVICE_ID_SESSION_KEY: "accounts.passkey/8", PASSKEY_FLAGS_KEY: bound})
    assert other.authenticator == "passkey" and other.passkey_flags is None
    by_code = context_of(user, {DEVICE_ID_SESSION_KEY: "otp_totp.totpdevice/3", PASSKEY_FLAGS_KEY: bound})
    assert by_code.authenticator == "totp"


@pytest.mark.parametrize(
    ("used", "required", "met"),
    [
        ("passkey_bound", "passkey_bound", True),
        ("passkey_bound", "passkey", True),
        ("passkey_bound", "totp", True),
        ("passkey", "passkey_bound", False),
        ("totp", "passkey_bound", False),
        ("backup", "passkey_bound", False),
        (None, "passkey_bound", False),
    ],
)
def test_a_device_bound_passkey_is_the_strongest_factor(
    make_user: Any, used: str | None, required: str, met: bool
) -> None:
    rule = compiled(required_authenticator=required)
    unmet = rule.unmet(rules.Moment(AccessContext(user=make_user(), authenticator=used)))
    assert (unmet == {}) is met
