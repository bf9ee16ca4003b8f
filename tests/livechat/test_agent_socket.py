"""The agents' socket: only verified sessions, only their segment, and trust withdrawn at once."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from accounts import roles
from accounts.models import User, UserSession
from accounts.services import SESSION_LAST_SEEN_KEY, sessions_end_all
from audit.models import AccessEvent
from config.asgi import application
from inbox import services
from inbox.models import (
    InboxGroupObjectPermission,
    InboxUserObjectPermission,
    Message,
)
from inbox.policy import AccessContext
from tests.conftest import start_session
from tests.inbox.conftest import grant_inbox, make_conversation
from tests.livechat.conftest import Chat, agent_socket, db, next_event, say, visitor

pytestmark = pytest.mark.django_db(transaction=True)

# Revocation must reach an open socket within this long; measured from the committed change.
WITHIN = 1.0


async def _write(chat: Chat, inbox_attr: str = "inbox", text: str = "hello") -> Message:
    """A new inbound message in one of the fixture's inboxes (an email-like channel write)."""
    inbox = getattr(chat, inbox_attr)

    def write() -> Message:
        conversation = make_conversation(inbox, text=text)
        message = conversation.messages.get()
        services.note_add(ctx=AccessContext(user=_supervisor(inbox)), conversation=conversation, text="seen")
        return message

    return await db(write)()


def _supervisor(inbox: Any) -> User:
    user, _ = User.objects.get_or_create(username=f"supervisor-{inbox.pk}")
    grant_inbox(inbox, user)
    return user


async def _silent(communicator: WebsocketCommunicator, seconds: float = 0.5) -> bool:
    return bool(await communicator.receive_nothing(timeout=seconds, interval=0.02))


async def test_anonymous_password_only_and_cross_origin_sockets_are_refused(
    chat: Chat, make_user: Any
) -> None:
    anonymous = WebsocketCommunicator(
        application,
        "/ws/agent/",
        headers=[(b"origin", b"http://testserver"), (b"host", b"testserver")],
    )
    assert (await anonymous.connect(timeout=5))[0] is False

    password_only = Client()
    await db(start_session)(password_only, chat.agent, verified=False)
    _, connected, _ = await agent_socket(chat.agent, client=password_only)
    assert not connected

    # Same site, other origin (another port of this host): refused although it sends the cookie.
    _, connected, _ = await agent_socket(chat.agent, origin="http://testserver:8001")
    assert not connected
    _, connected, _ = await agent_socket(chat.agent)
    assert connected


async def test_agent_of_another_segment_gets_nothing_of_this_inbox(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    bill, _, _ = await agent_socket(chat.other_agent)
    message = await _write(chat, "other_inbox", text="invoice question")
    event = await next_event(bill)
    assert event["event"] == "note.created" or event["conversation_id"] == message.conversation_id
    assert await _silent(alice)
    mine = await _write(chat)
    event = await next_event(alice)
    assert event["conversation_id"] == mine.conversation_id
    assert event["inbox_id"] == chat.inbox.pk


async def test_a_conversation_grant_lets_only_that_conversation_through(chat: Chat) -> None:
    first = await _write(chat, "other_inbox", text="escalated")
    await db(assign_perm)("view_conversation", chat.agent, first.conversation)
    alice, _, _ = await agent_socket(chat.agent)
    await db(services.note_add)(
        ctx=AccessContext(user=await db(_supervisor)(chat.other_inbox)),
        conversation=first.conversation,
        text="look",
    )
    event = await next_event(alice)
    assert (event["event"], event["conversation_id"]) == ("note.created", first.conversation_id)
    await _write(chat, "other_inbox", text="not escalated")
    assert await _silent(alice)


async def _changed_within(communicator: WebsocketCommunicator, started: float) -> None:
    frame = await communicator.receive_json_from(timeout=WITHIN + 1)
    assert frame == {"type": "access.changed"}
    assert time.monotonic() - started <= WITHIN


async def _closed_within(communicator: WebsocketCommunicator, started: float) -> None:
    frame = await communicator.receive_json_from(timeout=WITHIN + 1)
    assert frame == {"type": "session.ended"}
    assert await communicator.receive_output(timeout=WITHIN + 1) == {"type": "websocket.close", "code": 4401}
    assert time.monotonic() - started <= WITHIN


async def test_revoking_the_team_grant_unsubscribes_within_a_second(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    started = time.monotonic()
    await db(InboxGroupObjectPermission.objects.filter(group=chat.team, content_object=chat.inbox).delete)()
    await _changed_within(alice, started)
    await _write(chat)
    assert await _silent(alice)


async def test_leaving_the_team_unsubscribes_within_a_second(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    started = time.monotonic()
    await db(chat.team.user_set.remove)(chat.agent)
    await _changed_within(alice, started)
    await _write(chat)
    assert await _silent(alice)


async def test_a_new_grant_subscribes_at_once(chat: Chat) -> None:
    bill, _, _ = await agent_socket(chat.other_agent)
    await db(grant_inbox)(chat.inbox, chat.other_agent)
    assert await bill.receive_json_from(timeout=WITHIN + 1) == {"type": "access.changed"}
    message = await _write(chat)
    assert (await next_event(bill))["conversation_id"] == message.conversation_id


async def test_an_expiring_grant_unsubscribes_within_a_second_of_expiry(chat: Chat) -> None:
    bill, _, _ = await agent_socket(chat.other_agent)
    expires_at = timezone.now() + timedelta(seconds=2)
    await db(grant_inbox)(chat.inbox, chat.other_agent, expires_at=expires_at)
    assert await bill.receive_json_from(timeout=WITHIN + 1) == {"type": "access.changed"}
    await _write(chat)
    assert (await next_event(bill))["inbox_id"] == chat.inbox.pk
    # Nothing happens at expiry; the socket's own timer re-asks the policy.
    frame = await bill.receive_json_from(timeout=5)
    assert frame == {"type": "access.changed"}
    assert (timezone.now() - expires_at).total_seconds() <= WITHIN
    await _write(chat)
    assert await _silent(bill)


async def test_ending_the_session_closes_the_socket_within_a_second(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    started = time.monotonic()
    await db(sessions_end_all)(user=chat.agent, reason=UserSession.EndReason.REVOKED)
    await _closed_within(alice, started)


async def test_logout_closes_the_socket_within_a_second(chat: Chat) -> None:
    alice, _, client = await agent_socket(chat.agent)
    started = time.monotonic()
    response = await db(client.post)("/accounts/logout/")
    assert response.status_code == 302
    await _closed_within(alice, started)


async def test_deactivating_the_account_closes_the_socket_within_a_second(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    started = time.monotonic()

    def deactivate() -> None:
        chat.agent.is_active = False
        chat.agent.save(update_fields=["is_active"])

    await db(deactivate)()
    await _closed_within(alice, started)


async def test_supervisor_ending_sessions_in_the_admin_closes_the_socket(chat: Chat, make_user: Any) -> None:
    alice, _, _ = await agent_socket(chat.agent)

    def supervisor_client() -> Client:
        # A superuser: the transactional flush removed the roles' permissions with the migrations' data.
        supervisor = make_user(roles.SUPERVISOR, is_staff=True, is_superuser=True)
        client = Client()
        start_session(client, supervisor, verified=True)
        return client

    admin = await db(supervisor_client)()
    session_ids = await db(
        lambda: list(UserSession.objects.filter(user=chat.agent).values_list("pk", flat=True))
    )()
    started = time.monotonic()
    response = await db(admin.post)(
        "/admin/accounts/usersession/",
        {"action": "revoke", "_selected_action": [str(pk) for pk in session_ids]},
    )
    assert response.status_code == 302
    await _closed_within(alice, started)


async def test_idle_timeout_closes_the_socket_at_the_deadline(chat: Chat, settings: Any) -> None:
    client = Client()
    await db(start_session)(client, chat.agent, verified=True)

    def nearly_idle() -> None:
        session = client.session
        idle = settings.SESSION_IDLE_TIMEOUT.total_seconds()
        session[SESSION_LAST_SEEN_KEY] = time.time() - idle + 1.5
        session.save()

    await db(nearly_idle)()
    alice, connected, _ = await agent_socket(chat.agent, client=client)
    assert connected
    deadline = time.monotonic() + 1.5
    frame = await alice.receive_json_from(timeout=5)
    assert frame == {"type": "session.ended"}
    assert time.monotonic() - deadline <= WITHIN


async def test_every_frame_is_checked_by_the_policy(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    bill, _, _ = await agent_socket(chat.other_agent)
    theirs = await _write(chat, "other_inbox")
    await next_event(bill)
    await alice.send_json_to({"type": "typing", "conversation_id": theirs.conversation_id})
    assert (await alice.receive_json_from(timeout=5))["code"] == "not_found"
    await alice.send_json_to(
        {"type": "read", "conversation_id": theirs.conversation_id, "message_id": theirs.pk}
    )
    assert (await alice.receive_json_from(timeout=5))["code"] == "not_found"
    assert await _silent(bill)
    await db(theirs.refresh_from_db)()
    assert theirs.delivery_status == Message.DeliveryStatus.RECEIVED
    denied = await db(
        lambda: AccessEvent.objects.filter(
            user_id=chat.agent.pk, allowed=False, object_id=theirs.conversation_id
        ).count()
    )()
    assert denied >= 2

    # View-only in the inbox: may mark read, may not type a reply.
    await db(grant_inbox)(chat.other_inbox, chat.agent, ("view_inbox",))
    assert await alice.receive_json_from(timeout=WITHIN + 1) == {"type": "access.changed"}
    await alice.send_json_to({"type": "typing", "conversation_id": theirs.conversation_id})
    assert (await alice.receive_json_from(timeout=5))["code"] == "forbidden"
    await alice.send_json_to(
        {"type": "read", "conversation_id": theirs.conversation_id, "message_id": theirs.pk}
    )
    event = await next_event(alice)
    assert event["event"] == "conversation.read" and event["by"] == chat.agent.pk
    await db(theirs.refresh_from_db)()
    assert theirs.delivery_status == Message.DeliveryStatus.READ


async def test_a_frame_after_the_session_ended_behind_our_back_closes_the_socket(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    # A change that sends no signal (a bulk update): the next frame still finds it.
    await db(lambda: UserSession.objects.filter(user=chat.agent).update(ended_at=timezone.now()))()
    await alice.send_json_to({"type": "ping"})
    assert await alice.receive_json_from(timeout=5) == {"type": "session.ended"}


async def test_agent_typing_and_read_reach_the_visitor(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    customer, _ = await visitor(chat.channel.key)
    ack = await say(customer, "anyone there?")
    created = await next_event(alice)
    await alice.send_json_to({"type": "typing", "conversation_id": created["conversation_id"]})
    while (frame := await customer.receive_json_from(timeout=5))["type"] == "message":
        pass  # the visitor's own message, echoed to their other tabs
    assert frame == {"type": "typing", "name": "Alice"}
    typing = await next_event(alice)  # colleagues see it too
    assert typing["event"] == "typing" and typing["user_id"] == chat.agent.pk
    await alice.send_json_to(
        {"type": "read", "conversation_id": created["conversation_id"], "message_id": ack["message"]["id"]}
    )
    assert await customer.receive_json_from(timeout=5) == {"type": "read", "up_to": ack["message"]["id"]}


async def test_frames_are_bounded(chat: Chat) -> None:
    alice, _, _ = await agent_socket(chat.agent)
    await alice.send_json_to({"type": "nonsense"})
    assert (await alice.receive_json_from(timeout=5))["code"] == "invalid"
    await alice.send_json_to({"type": "typing", "conversation_id": "1; DROP TABLE"})
    assert (await alice.receive_json_from(timeout=5))["code"] == "invalid"
    await alice.send_to(text_data="x" * 5000)
    assert await alice.receive_output(timeout=5) == {"type": "websocket.close", "code": 1009}


async def test_presence_changes_reach_colleagues(chat: Chat, make_user: Any) -> None:
    colleague = await db(make_user)(roles.AGENT, first_name="Carol")
    await db(colleague.groups.add)(chat.team)
    alice, _, _ = await agent_socket(chat.agent)
    carol, _, _ = await agent_socket(colleague)
    await alice.send_json_to({"type": "presence", "status": "online"})
    event = await next_event(carol)
    assert (event["event"], event["user_id"], event["status"], event["name"]) == (
        "presence",
        chat.agent.pk,
        "online",
        "Alice",
    )
    await alice.send_json_to({"type": "presence", "status": "online"})  # a heartbeat: no news
    assert await _silent(carol)


async def test_user_grant_deleted_in_the_admin_list_unsubscribes(chat: Chat) -> None:
    await db(grant_inbox)(chat.other_inbox, chat.agent)
    alice, _, _ = await agent_socket(chat.agent)
    started = time.monotonic()
    await db(
        InboxUserObjectPermission.objects.filter(user=chat.agent, content_object=chat.other_inbox).delete
    )()
    await _changed_within(alice, started)
    await _write(chat, "other_inbox")
    assert await _silent(alice)
