"""The security console's access log, and who accessed a conversation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from accounts import roles
from accounts.models import User
from audit.models import AccessEvent
from inbox.models import ChannelKind, Inbox, Module, Team
from tests.inbox.conftest import grant_inbox, make_conversation

pytestmark = pytest.mark.django_db

LOG = "/admin/audit/accessevent/"


def access(user: User, object_id: int, *, action: str = "view", allowed: bool = True) -> AccessEvent:
    return AccessEvent.objects.create(
        user_id=user.pk, object_type="inbox.conversation", object_id=object_id, action=action, allowed=allowed
    )


@pytest.fixture
def support(make_user: Callable[..., User]) -> dict[str, Any]:
    inbox = Inbox.objects.create(name="Support", channel_kind=ChannelKind.EMAIL, module=Module.SUPPORT)
    team = Team.objects.create(name="Support team")
    grant_inbox(inbox, team)
    agent = make_user(roles.AGENT, username="alice")
    agent.groups.add(team)
    supervisor = make_user(roles.SUPERVISOR, username="sam", is_staff=True)
    grant_inbox(inbox, supervisor, perms=("view_inbox", "reply_inbox", "manage_inbox"))
    assign_perm("manage_team", supervisor, team)
    billing = Inbox.objects.create(name="Billing", channel_kind=ChannelKind.EMAIL, module=Module.BILLING)
    billing_team = Team.objects.create(name="Billing team")
    grant_inbox(billing, billing_team)
    outsider = make_user(roles.AGENT, username="olga")  # of a segment sam does not manage
    outsider.groups.add(billing_team)
    return {
        "inbox": inbox,
        "agent": agent,
        "supervisor": supervisor,
        "outsider": outsider,
        "administrator": make_user(roles.ADMINISTRATOR, username="ada", is_staff=True),
    }


def listed_object_ids(client: Client, query: str = "") -> set[int]:
    response = client.get(LOG + query)
    assert response.status_code == 200
    return {event.object_id for event in response.context["cl"].result_list}


def test_a_supervisor_sees_the_accounts_they_manage_and_their_own(
    support: dict[str, Any], verified_client: Callable[[User], Client]
) -> None:
    access(support["agent"], 1)
    access(support["supervisor"], 2)
    access(support["outsider"], 3)
    access(support["administrator"], 4)
    assert listed_object_ids(verified_client(support["supervisor"])) == {1, 2}
    assert listed_object_ids(verified_client(support["administrator"])) == {1, 2, 3, 4}


def test_the_log_filters_by_user_object_action_decision_and_time(
    support: dict[str, Any], verified_client: Callable[[User], Client]
) -> None:
    agent = support["agent"]
    access(agent, 1)
    access(agent, 2, action="reply", allowed=False)
    access(support["outsider"], 3)
    client = verified_client(support["administrator"])
    assert listed_object_ids(client, f"?user_id={agent.pk}") == {1, 2}
    assert listed_object_ids(client, "?object_type=inbox.conversation&object_id=2") == {2}
    assert listed_object_ids(client, "?action=reply") == {2}
    assert listed_object_ids(client, "?allowed__exact=0") == {2}
    assert listed_object_ids(client, "?created_at__gte=2000-01-01") == {1, 2, 3}
    assert listed_object_ids(client, "?created_at__lt=2000-01-01") == set()


def test_the_log_is_read_only(support: dict[str, Any], verified_client: Callable[[User], Client]) -> None:
    event = access(support["agent"], 1)
    client = verified_client(support["administrator"])
    assert client.get(f"{LOG}add/").status_code == 403
    assert client.post(f"{LOG}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AccessEvent.objects.filter(pk=event.pk).exists()


def test_the_log_shows_usernames(support: dict[str, Any], verified_client: Callable[[User], Client]) -> None:
    access(support["agent"], 1)
    page = verified_client(support["administrator"]).get(LOG).content.decode()
    assert "alice" in page


@pytest.mark.parametrize("viewer", ["supervisor", "administrator"])
def test_the_log_costs_the_same_queries_for_5_and_50_rows(
    support: dict[str, Any], verified_client: Callable[[User], Client], viewer: str
) -> None:
    client = verified_client(support[viewer])

    def queries_for(rows: int) -> int:
        AccessEvent.objects.bulk_create(
            AccessEvent(
                user_id=support["agent"].pk,
                object_type="inbox.conversation",
                object_id=i,
                action="view",
                allowed=True,
            )
            for i in range(rows - AccessEvent.objects.count())
        )
        with CaptureQueriesContext(connection) as queries:
            response = client.get(LOG)
        assert response.status_code == 200 and len(response.context["cl"].result_list) == rows
        return len(queries)

    assert queries_for(5) == queries_for(50)


def test_the_conversation_page_lists_who_accessed_it(
    support: dict[str, Any], verified_client: Callable[[User], Client]
) -> None:
    conversation = make_conversation(support["inbox"], text="printer jam")
    other = make_conversation(support["inbox"], text="toner")
    access(support["agent"], conversation.pk, action="reply", allowed=False)
    access(support["outsider"], other.pk)
    client = verified_client(support["supervisor"])
    page = client.get(f"/admin/inbox/conversation/{conversation.pk}/change/").content.decode()
    assert "Who accessed this conversation" in page
    assert "<td>alice</td><td>reply</td><td>denied</td>" in page
    assert "<td>olga</td>" not in page  # read the other conversation only
    # The supervisor's own opening of this page is recorded, and shown from the next view on.
    page = client.get(f"/admin/inbox/conversation/{conversation.pk}/change/").content.decode()
    assert "<td>sam</td><td>view</td><td>allowed</td>" in page
