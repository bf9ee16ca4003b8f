"""Supervisors grant, time-box and revoke access in the admin; the policy follows at once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from accounts import roles
from inbox import policy
from inbox.models import ConversationUserObjectPermission
from tests.inbox.conftest import Segments, ctx, grant_inbox

pytestmark = pytest.mark.django_db


def grant_form(conversation: Any, rows: list[dict[str, Any]], initial: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = {
        "priority": conversation.priority,
        "user_grants-TOTAL_FORMS": len(rows),
        "user_grants-INITIAL_FORMS": initial,
        "group_grants-TOTAL_FORMS": 0,
        "group_grants-INITIAL_FORMS": 0,
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"user_grants-{i}-{key}"] = value
    return data


@pytest.fixture
def supervisor(make_user: Any, segments: Segments) -> Any:
    user = make_user(roles.SUPERVISOR, is_staff=True, username="sam")
    grant_inbox(segments.support, user, perms=("view_inbox", "reply_inbox", "manage_inbox"))
    grant_inbox(segments.billing, user, perms=("view_inbox", "reply_inbox", "manage_inbox"))
    return user


def test_supervisor_grants_a_conversation_for_an_hour(
    segments: Segments, supervisor: Any, verified_client: Any
) -> None:
    client = verified_client(supervisor)
    conversation = segments.billing_conversations[0]
    agent = segments.support_agent
    assert conversation.pk not in policy.visible_conversations(ctx(agent)).values_list("pk", flat=True)

    view = Permission.objects.get(codename="view_conversation")
    expires = timezone.now() + timedelta(hours=1)
    response = client.post(
        f"/admin/inbox/conversation/{conversation.pk}/change/",
        grant_form(
            conversation,
            [
                {
                    "user": agent.pk,
                    "permission": view.pk,
                    "expires_at_0": expires.strftime("%Y-%m-%d"),
                    "expires_at_1": expires.strftime("%H:%M:%S"),
                    "reason": "Escalation: refund question",
                }
            ],
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = ConversationUserObjectPermission.objects.get(user=agent)
    assert grant.reason == "Escalation: refund question"
    assert grant.granted_by == supervisor
    assert grant.expires_at is not None

    agent_client = verified_client(agent)
    assert agent_client.get(f"/conversations/{conversation.pk}/").status_code == 200
    # The grant list shows expiry and reason to supervisors.
    listing = client.get("/admin/inbox/conversationuserobjectpermission/?state=temporary")
    assert b"Escalation: refund question" in listing.content

    # Expiry needs no job: the moment passes, the next request is refused.
    ConversationUserObjectPermission.objects.filter(pk=grant.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert agent_client.get(f"/conversations/{conversation.pk}/").status_code == 404


def test_supervisor_revokes_a_grant(segments: Segments, supervisor: Any, verified_client: Any) -> None:
    from guardian.shortcuts import assign_perm

    conversation = segments.billing_conversations[0]
    agent = segments.support_agent
    grant = assign_perm("view_conversation", agent, conversation)
    agent_client = verified_client(agent)
    assert agent_client.get(f"/conversations/{conversation.pk}/").status_code == 200

    client = verified_client(supervisor)
    data = grant_form(
        conversation,
        [{"id": grant.pk, "user": agent.pk, "permission": grant.permission_id, "reason": "", "DELETE": "on"}],
        initial=1,
    )
    data["user_grants-0-content_object"] = conversation.pk
    response = client.post(f"/admin/inbox/conversation/{conversation.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not ConversationUserObjectPermission.objects.filter(pk=grant.pk).exists()
    assert agent_client.get(f"/conversations/{conversation.pk}/").status_code == 404


def test_inbox_page_lists_who_can_see_it(segments: Segments, supervisor: Any, verified_client: Any) -> None:
    page = verified_client(supervisor).get(f"/admin/inbox/inbox/{segments.support.pk}/change/")
    assert page.status_code == 200
    who = page.content.decode().split("Who can see it now")[1][:600]
    assert "sue" in who
    assert "bill" not in who


def test_admin_lists_only_visible_conversations(
    segments: Segments, make_user: Any, verified_client: Any
) -> None:
    supervisor = make_user(roles.SUPERVISOR, is_staff=True)
    grant_inbox(segments.support, supervisor, perms=("view_inbox",))
    client = verified_client(supervisor)
    listing = client.get("/admin/inbox/conversation/")
    assert listing.status_code == 200
    assert b"printer jam" in listing.content
    assert b"invoice question" not in listing.content
    other = segments.billing_conversations[0]
    assert client.get(f"/admin/inbox/conversation/{other.pk}/change/").status_code == 302  # "doesn't exist"
    # View-only: the admin refuses to save changes.
    mine = segments.support_conversations[0]
    response = client.post(
        f"/admin/inbox/conversation/{mine.pk}/change/", grant_form(mine, []) | {"priority": 3}
    )
    assert response.status_code == 403
    mine.refresh_from_db()
    assert mine.priority != 3


def test_a_posted_change_to_an_existing_grants_holder_or_action_is_ignored(
    segments: Segments, supervisor: Any, verified_client: Any, make_user: Any
) -> None:
    """A forged post cannot turn someone's grant into another person's, or into more."""
    from guardian.shortcuts import assign_perm

    conversation = segments.billing_conversations[0]
    agent = segments.support_agent
    other = make_user(roles.AGENT, username="mallory")
    grant = assign_perm("view_conversation", agent, conversation)
    reply = Permission.objects.get(codename="reply_conversation")
    client = verified_client(supervisor)
    for holder in (other, agent):
        row = {"id": grant.pk, "user": holder.pk, "permission": reply.pk, "reason": "more"}
        data = grant_form(conversation, [row], initial=1)
        data["user_grants-0-content_object"] = conversation.pk
        client.post(f"/admin/inbox/conversation/{conversation.pk}/change/", data)
        kept = ConversationUserObjectPermission.objects.get(pk=grant.pk)
        assert (kept.user_id, kept.permission_id) == (agent.pk, grant.permission_id)
    assert not ConversationUserObjectPermission.objects.filter(user=other).exists()
    assert not ConversationUserObjectPermission.objects.filter(permission=reply).exists()
