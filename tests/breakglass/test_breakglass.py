"""Break-glass: an agent asks for time-boxed access to a conversation outside their
segment; a supervisor who manages it approves (a time-bound conversation grant) or
rejects; an emergency request, where allowed, is granted at once with an alarm; the
access expires by itself and its use is reviewed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts import roles
from accounts.models import User
from audit.models import SecurityEvent
from inbox.breakglass.models import BreakGlassRequest
from inbox.models import Conversation, ConversationUserObjectPermission
from tests.inbox.conftest import Segments, grant_inbox

pytestmark = pytest.mark.django_db

REASON = "Customer called the hotline about a double charge"


@pytest.fixture
def sam(
    make_user: Callable[..., User], segments: Segments, verified_client: Callable[[User], Client]
) -> Client:
    """The billing inbox's supervisor."""
    user = make_user(roles.SUPERVISOR, is_staff=True, username="sam")
    grant_inbox(segments.billing, user, perms=("view_inbox", "reply_inbox", "manage_inbox"))
    return verified_client(user)


@pytest.fixture
def sue(segments: Segments, verified_client: Callable[[User], Client]) -> Client:
    """A support agent: the billing inbox is outside her segment."""
    return verified_client(segments.support_agent)


def conversation_url(conversation: Conversation) -> str:
    return f"/conversations/{conversation.pk}/"


def ask(client: Client, conversation_id: int, **fields: Any) -> Any:
    return client.post(
        "/breakglass/", {"conversation": conversation_id, "reason": REASON, "minutes": 30, **fields}
    )


def admin_action(client: Client, action: str, request: BreakGlassRequest) -> Any:
    return client.post(
        "/admin/inbox/breakglassrequest/", {"action": action, "_selected_action": [request.pk]}, follow=True
    )


def test_a_supervisor_approves_and_the_access_expires_by_itself(
    segments: Segments, sue: Client, sam: Client
) -> None:
    billing = segments.billing_conversations[0]
    assert sue.get(conversation_url(billing)).status_code == 404
    assert ask(sue, billing.pk).status_code == 302
    request = BreakGlassRequest.objects.get()
    assert request.status == "pending"
    assert sue.get(conversation_url(billing)).status_code == 404  # nothing before the approval

    listing = sam.get("/admin/inbox/breakglassrequest/").content.decode()
    assert f"/admin/inbox/breakglassrequest/{request.pk}/change/" in listing
    assert "approved" in admin_action(sam, "approve", request).content.decode()
    request.refresh_from_db()
    assert request.status == "approved" and request.decided_by is not None
    assert request.expires_at is not None and request.expires_at <= timezone.now() + timedelta(minutes=30)
    assert sue.get(conversation_url(billing)).status_code == 200
    grants = ConversationUserObjectPermission.objects.filter(
        user=segments.support_agent, content_object=billing
    )
    assert {g.permission.codename for g in grants} == {"view_conversation", "reply_conversation"}
    assert all(g.expires_at == request.expires_at and f"break-glass {request.pk}" in g.reason for g in grants)

    grants.update(expires_at=timezone.now() - timedelta(seconds=1))  # its time is up
    assert sue.get(conversation_url(billing)).status_code == 404
    assert "reviewed" in admin_action(sam, "mark_reviewed", request).content.decode()
    request.refresh_from_db()
    assert request.reviewed_by is not None


def test_a_rejected_request_grants_nothing(segments: Segments, sue: Client, sam: Client) -> None:
    billing = segments.billing_conversations[0]
    ask(sue, billing.pk)
    request = BreakGlassRequest.objects.get()
    admin_action(sam, "reject", request)
    request.refresh_from_db()
    assert request.status == "rejected"
    assert sue.get(conversation_url(billing)).status_code == 404
    assert "decided already" in admin_action(sam, "approve", request).content.decode()


def test_a_supervisor_outside_the_segment_neither_sees_nor_approves(
    segments: Segments, sue: Client, make_user: Callable[..., User], verified_client: Callable[[User], Client]
) -> None:
    support_supervisor = make_user(roles.SUPERVISOR, is_staff=True, username="sid")
    grant_inbox(segments.support, support_supervisor, perms=("view_inbox", "manage_inbox"))
    sid = verified_client(support_supervisor)
    ask(sue, segments.billing_conversations[0].pk)
    request = BreakGlassRequest.objects.get()
    assert (
        f"/breakglassrequest/{request.pk}/change/"
        not in sid.get("/admin/inbox/breakglassrequest/").content.decode()
    )
    admin_action(sid, "approve", request)  # the request is not in their list: nothing happens
    request.refresh_from_db()
    assert request.status == "pending"


def test_a_stolen_supervisor_session_cannot_approve_its_own_break_glass(
    segments: Segments, make_user: Callable[..., User], verified_client: Callable[[User], Client]
) -> None:
    # A supervisor of billing who asks for a support conversation, then approves it.
    mallory = make_user(roles.SUPERVISOR, is_staff=True, username="mallory")
    grant_inbox(segments.billing, mallory, perms=("view_inbox", "manage_inbox"))
    grant_inbox(segments.support, mallory, perms=("manage_inbox",))
    client = verified_client(mallory)
    target = segments.support_conversations[0]
    ask(client, target.pk)
    request = BreakGlassRequest.objects.get()
    assert "Nobody approves their own access" in admin_action(client, "approve", request).content.decode()
    request.refresh_from_db()
    assert request.status == "pending"
    assert not ConversationUserObjectPermission.objects.filter(user=mallory).exists()


def test_the_answer_is_the_same_for_a_conversation_that_does_not_exist(
    segments: Segments, sue: Client, sam: Client
) -> None:
    response = ask(sue, 987654321)
    assert response.status_code == 302
    assert "Request sent" in sue.get("/breakglass/").content.decode()
    assert "987654321" not in sam.get("/admin/inbox/breakglassrequest/").content.decode()


def test_bad_input_is_a_form_error(segments: Segments, sue: Client) -> None:
    billing = segments.billing_conversations[0]
    assert ask(sue, billing.pk, reason="because").status_code == 400  # too short to review
    assert ask(sue, billing.pk, minutes=100_000).status_code == 400
    assert (
        sue.post("/breakglass/", {"conversation": "x" * 30, "reason": REASON, "minutes": "y"}).status_code
        == 400
    )
    assert ask(sue, 2**70).status_code == 400
    assert not BreakGlassRequest.objects.exists()


def test_emergency_is_refused_unless_the_deployment_allows_it(segments: Segments, sue: Client) -> None:
    response = ask(sue, segments.billing_conversations[0].pk, emergency="on")
    # The field is not even offered; the request waits for a supervisor.
    assert response.status_code == 302
    assert BreakGlassRequest.objects.get().status == "pending"


def test_emergency_grants_at_once_and_raises_the_alarm(
    segments: Segments, sue: Client, settings: Any
) -> None:
    settings.BREAKGLASS_EMERGENCY_ALLOWED = True
    billing = segments.billing_conversations[0]
    assert ask(sue, billing.pk, emergency="on", minutes=15).status_code == 302
    request = BreakGlassRequest.objects.get()
    assert request.status == "emergency" and request.decided_by is None
    assert sue.get(conversation_url(billing)).status_code == 200
    alarm = SecurityEvent.objects.get(severity="critical")
    assert alarm.user == segments.support_agent and alarm.detail["emergency"] is True
    assert alarm.detail["break_glass"] == request.pk
    ConversationUserObjectPermission.objects.filter(user=segments.support_agent).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert sue.get(conversation_url(billing)).status_code == 404
