"""The agents' socket reads the session's second factor like a page does: a rule requiring
a device-bound passkey binds following an inbox and every frame, and lets such a session's
socket through (without the factor in its context, the rule would refuse every socket)."""

from __future__ import annotations

import secrets

import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from accounts.models import Passkey, User
from accounts.services import PASSKEY_FLAGS_KEY, PasskeyFlags
from inbox.models import Conversation, PolicyRule
from tests.conftest import start_session
from tests.devices.test_socket_trust import typing_answer
from tests.inbox.conftest import make_conversation
from tests.livechat.conftest import Chat, agent_socket, db

pytestmark = pytest.mark.django_db(transaction=True)


def bound_passkey_rule(chat: Chat) -> Conversation:
    rule = PolicyRule.objects.create(
        name="Chat needs a device-bound passkey",
        mode=PolicyRule.Mode.ENFORCE,
        effect=PolicyRule.Effect.DENY,
        required_authenticator="passkey_bound",
    )
    rule.inboxes.set([chat.inbox])
    return make_conversation(chat.inbox)


def verified_by_passkey(user: User, *, device_bound: bool) -> Client:
    """A session in the state a passkey sign-in leaves it (tests/passkeys/test_passkey_flags
    covers the ceremony that writes it)."""
    client = Client()
    start_session(client, user, verified=True)
    passkey = Passkey.objects.create(
        user=user,
        name="key",
        credential_id=secrets.token_urlsafe(32),
        public_key=b"",
        device_type="single_device" if device_bound else "multi_device",
        backed_up=not device_bound,
    )
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = passkey.persistent_id
    session[PASSKEY_FLAGS_KEY] = PasskeyFlags(
        device=passkey.persistent_id, device_bound=device_bound, user_verified=True, aaguid=""
    )
    session.save()
    return client


@pytest.mark.parametrize(("device_bound", "answered"), [(True, "event"), (False, "error")])
async def test_a_device_bound_passkey_rule_binds_the_socket(
    chat: Chat, device_bound: bool, answered: str
) -> None:
    conversation = await db(bound_passkey_rule)(chat)
    client = await db(verified_by_passkey)(chat.agent, device_bound=device_bound)
    socket, connected, _ = await agent_socket(chat.agent, client=client)
    assert connected
    answer = await typing_answer(socket, conversation)
    assert answer["type"] == answered
    await socket.disconnect()


async def test_a_code_verified_socket_does_not_meet_it(chat: Chat) -> None:
    conversation = await db(bound_passkey_rule)(chat)
    socket, connected, _ = await agent_socket(chat.agent)
    assert connected
    refused = await typing_answer(socket, conversation)
    assert refused["type"] == "error" and refused["code"] == "not_found"
    await socket.disconnect()
