"""Passkeys over HTTP: registration needs a fresh factor, sign-in and step-up with one,
removal needs a fresh factor; forged or replayed answers are refused and recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client, override_settings
from django_otp import DEVICE_ID_SESSION_KEY

from accounts import roles
from accounts.models import Passkey, User
from audit.models import SecurityEvent
from inbox.models import PolicyRule
from tests.conftest import start_session
from tests.inbox.conftest import Segments
from tests.passkeys.authenticator import SoftAuthenticator
from tests.passkeys.conftest import ORIGIN, age_verification, register

pytestmark = pytest.mark.django_db


def passkey_events(user: User, kind: str) -> list[dict[str, Any]]:
    return [
        event.detail
        for event in SecurityEvent.objects.filter(user=user, kind=kind).order_by("pk")
        if event.detail.get("factor") == "passkey"
    ]


def unverified(user: User) -> Client:
    client = Client()
    start_session(client, user, verified=False)
    return client


def sign_in_answer(client: Client, authenticator: SoftAuthenticator, *, origin: str = ORIGIN) -> str:
    options = client.post("/accounts/passkeys/assertion-options/").json()
    return authenticator.get(options, origin=origin)


def test_register_from_the_security_page_and_list_it(make_user: Any, verified_client: Any) -> None:
    user = make_user(roles.AGENT)
    client = verified_client(user)
    assert b"No passkeys yet." in client.get("/accounts/security/").content
    naming = client.post("/accounts/passkeys/add/", {"name": "work laptop"})
    assert naming.status_code == 200 and b"Create passkey" in naming.content
    passkey = register(client, SoftAuthenticator(), name="work laptop")
    assert passkey.user == user and passkey.confirmed and passkey.device_type == "single_device"
    page = client.get("/accounts/security/").content.decode()
    assert "work laptop" in page and "Bound to one device" in page
    assert passkey_events(user, SecurityEvent.Kind.ENROLLED) == [
        {"factor": "passkey", "passkey": passkey.pk, "device_type": "single_device", "aaguid": passkey.aaguid}
    ]


def test_registering_needs_a_fresh_factor(make_user: Any, verified_client: Any) -> None:
    user = make_user(roles.AGENT)
    client = verified_client(user)
    age_verification(client)
    options = client.post("/accounts/passkeys/registration-options/")
    assert options.status_code == 403 and options.json()["code"] == "step_up_required"
    prompt = client.post("/accounts/passkeys/add/", {"name": "laptop"})
    assert prompt.status_code == 403 and b"Confirm it is you" in prompt.content
    assert not Passkey.objects.filter(user=user).exists()


def test_a_passkey_made_for_another_origin_is_refused_and_recorded(
    make_user: Any, verified_client: Any
) -> None:
    user = make_user(roles.AGENT)
    client = verified_client(user)
    options = client.post("/accounts/passkeys/registration-options/").json()
    answer = SoftAuthenticator().create(options, origin="https://portcullis.evil.example")
    refused = client.post("/accounts/passkeys/add/", {"name": "phished", "credential": answer})
    assert refused.status_code == 400 and b"could not be verified" in refused.content
    assert not Passkey.objects.filter(user=user).exists()
    (event,) = passkey_events(user, SecurityEvent.Kind.OTP_FAILED)
    assert event["step"] == "register" and "origin" in event["reason"].lower()


def test_garbage_answers_are_form_errors_not_500s(make_user: Any, verified_client: Any) -> None:
    user = make_user(roles.AGENT)
    client = verified_client(user)
    client.post("/accounts/passkeys/registration-options/")
    assert client.post("/accounts/passkeys/add/", {"name": "x", "credential": "{nope"}).status_code == 400
    assert client.post("/accounts/passkeys/add/", {"name": "", "credential": "{}"}).status_code == 400
    register(client, authenticator := SoftAuthenticator())
    signing_in = unverified(user)
    signing_in.post("/accounts/passkeys/assertion-options/")
    for garbage in ("not json", "[]", '{"id": 5}', '{"id": "x", "response": {}}'):
        assert signing_in.post("/accounts/verify/", {"passkey_assertion": garbage}).status_code == 400
    assert authenticator.sign_count == 0


def test_sign_in_with_a_passkey_as_the_second_step(make_user: Any, with_passkey: Any) -> None:
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user)
    client = unverified(user)
    page = client.get("/accounts/verify/")
    assert b"Use a passkey instead" in page.content and b"js/passkeys.js" in page.content
    answer = sign_in_answer(client, authenticator)
    response = client.post("/accounts/verify/", {"passkey_assertion": answer, "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    passkey = Passkey.objects.get(user=user)
    assert client.session[DEVICE_ID_SESSION_KEY] == passkey.persistent_id
    assert passkey.sign_count == 1 and passkey.last_used_at is not None
    assert client.get("/").status_code == 200
    assert passkey_events(user, SecurityEvent.Kind.OTP_SUCCEEDED) == [
        {"factor": "passkey", "passkey": passkey.pk}
    ]


def test_a_replayed_assertion_is_refused_and_recorded(make_user: Any, with_passkey: Any) -> None:
    """A stolen answer (captured by a proxy, or left in a log) opens nothing a second time:
    the challenge was the first answer's, and its next challenge is not this one's."""
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user)
    first = unverified(user)
    answer = sign_in_answer(first, authenticator)
    assert first.post("/accounts/verify/", {"passkey_assertion": answer}).status_code == 302

    assert first.post("/accounts/verify/", {"passkey_assertion": answer}).status_code == 400

    thief = unverified(user)
    refused = thief.post("/accounts/verify/", {"passkey_assertion": answer})
    assert refused.status_code == 400 and b"expired or was already used" in refused.content
    thief.post("/accounts/passkeys/assertion-options/")  # a fresh challenge does not fit the old answer
    assert thief.post("/accounts/verify/", {"passkey_assertion": answer}).status_code == 400
    assert DEVICE_ID_SESSION_KEY not in thief.session
    reasons = [e["reason"] for e in passkey_events(user, SecurityEvent.Kind.OTP_FAILED)]
    assert reasons[:2] == ["no pending challenge", "no pending challenge"]
    assert "challenge" in reasons[2].lower() and len(reasons) == 3


def test_an_assertion_for_another_origin_is_refused_and_recorded(make_user: Any, with_passkey: Any) -> None:
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user)
    client = unverified(user)
    answer = sign_in_answer(client, authenticator, origin="https://portcullis.evil.example")
    assert client.post("/accounts/verify/", {"passkey_assertion": answer}).status_code == 400
    assert client.get("/")["Location"].startswith("/accounts/verify/")
    (event,) = passkey_events(user, SecurityEvent.Kind.OTP_FAILED)
    assert event["step"] == "assert" and "origin" in event["reason"].lower()


def test_another_persons_passkey_does_not_verify_me(make_user: Any, with_passkey: Any) -> None:
    victim, attacker = make_user(roles.AGENT), make_user(roles.AGENT)
    victims_key = with_passkey(victim)
    with_passkey(attacker)
    client = unverified(attacker)
    answer = sign_in_answer(client, victims_key)
    refused = client.post("/accounts/verify/", {"passkey_assertion": answer})
    assert refused.status_code == 400 and b"not registered for this account" in refused.content


def test_no_passkey_no_options(make_user: Any) -> None:
    client = unverified(make_user(roles.AGENT))
    assert client.post("/accounts/passkeys/assertion-options/").status_code == 404
    assert b"Use a passkey" not in client.get("/accounts/verify/").content
    assert Client().post("/accounts/passkeys/assertion-options/").status_code == 302


def test_removal_needs_a_fresh_factor_and_the_step_up_takes_a_passkey(
    make_user: Any, with_passkey: Any, verified_client: Any
) -> None:
    """A stolen session (stale factor) cannot remove the person's passkey; the person
    steps up with the passkey itself, and the interrupted removal goes on."""
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user)
    passkey = Passkey.objects.get(user=user)
    client = verified_client(user)
    age_verification(client)
    prompt = client.post(f"/accounts/passkeys/{passkey.pk}/remove/")
    assert prompt.status_code == 403 and b"Use a passkey instead" in prompt.content
    assert Passkey.objects.filter(pk=passkey.pk).exists()

    answer = sign_in_answer(client, authenticator)
    continued = client.post(
        "/accounts/step-up/",
        {
            "passkey_assertion": answer,
            "step_up_next": f"/accounts/passkeys/{passkey.pk}/remove/",
            "step_up_method": "POST",
        },
    )
    assert (
        continued.status_code == 307 and continued["Location"] == f"/accounts/passkeys/{passkey.pk}/remove/"
    )
    assert client.post(continued["Location"])["Location"] == "/accounts/security/"
    assert not Passkey.objects.filter(pk=passkey.pk).exists()
    (removed,) = passkey_events(user, SecurityEvent.Kind.FACTOR_RESET)
    assert removed == {"by": user.username, "factor": "passkey", "name": "laptop"}


def test_a_forged_step_up_answer_is_refused(make_user: Any, with_passkey: Any, verified_client: Any) -> None:
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user)
    client = verified_client(user)
    age_verification(client)
    answer = sign_in_answer(client, authenticator, origin="https://portcullis.evil.example")
    refused = client.post("/accounts/step-up/", {"passkey_assertion": answer, "step_up_next": "/"})
    assert refused.status_code == 400 and b"could not be verified" in refused.content


def test_nobody_removes_another_persons_passkey(
    make_user: Any, with_passkey: Any, verified_client: Any
) -> None:
    owner = make_user(roles.AGENT)
    with_passkey(owner)
    passkey = Passkey.objects.get(user=owner)
    other = verified_client(make_user(roles.SUPERVISOR))
    assert other.post(f"/accounts/passkeys/{passkey.pk}/remove/").status_code == 404
    assert Passkey.objects.filter(pk=passkey.pk).exists()


def test_a_rule_requiring_a_passkey_is_met_only_by_a_passkey_session(
    segments: Segments, with_passkey: Any, verified_client: Callable[[User], Client]
) -> None:
    conversation = segments.billing_conversations[0]
    authenticator = with_passkey(segments.billing_agent)
    rule = PolicyRule.objects.create(
        name="Billing needs a passkey",
        mode="enforce",
        effect=PolicyRule.Effect.DENY,
        required_authenticator="passkey",
    )
    rule.inboxes.set([segments.billing])
    with_code = verified_client(segments.billing_agent)
    assert with_code.get(f"/conversations/{conversation.pk}/").status_code == 404
    with_key = unverified(segments.billing_agent)
    answer = sign_in_answer(with_key, authenticator)
    assert with_key.post("/accounts/verify/", {"passkey_assertion": answer}).status_code == 302
    assert with_key.get(f"/conversations/{conversation.pk}/").status_code == 200


@override_settings(DEVICE_BINDING="monitor")
def test_under_device_binding_the_step_up_continues_by_a_fresh_signed_post(
    make_user: Any, with_passkey: Any, verified_client: Any
) -> None:
    """A 307 would re-post the step-up form's proof (made for /accounts/step-up/) to the
    continued URL; the continuation page posts the fields anew instead, for device.js to sign."""
    user = make_user(roles.AGENT)
    authenticator = with_passkey(user)
    passkey = Passkey.objects.get(user=user)
    client = verified_client(user)
    age_verification(client)
    target = f"/accounts/passkeys/{passkey.pk}/remove/"
    prompt = client.post(target, {"device_proof": "spent-proof", "keep": "me"}).content.decode()
    assert 'name="keep" value="me"' in prompt and "spent-proof" not in prompt
    continued = client.post(
        "/accounts/step-up/",
        {
            "passkey_assertion": sign_in_answer(client, authenticator),
            "step_up_next": target,
            "step_up_method": "POST",
            "keep": "me",
            "device_proof": "proof-for-the-step-up",
        },
    )
    page = continued.content.decode()
    assert continued.status_code == 200 and f'action="{target}" data-step-up-continue' in page
    assert 'name="keep" value="me"' in page and "proof-for-the-step-up" not in page
    assert "js/step_up.js" in page
    assert client.post(target)["Location"] == "/accounts/security/"
