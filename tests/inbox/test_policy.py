"""The policy decision point, directly: grants, expiry, revocation, deny by default."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from audit.models import AccessEvent
from inbox import policy
from inbox.models import ConversationUserObjectPermission, Inbox, InboxGroupObjectPermission
from inbox.policy import Action
from tests.inbox.conftest import Segments, ctx, grant_inbox

pytestmark = pytest.mark.django_db


def ids(qs: Any) -> set[int]:
    return set(qs.values_list("pk", flat=True))


def test_each_agent_sees_only_their_segment(segments: Segments) -> None:
    assert ids(policy.visible_conversations(ctx(segments.support_agent))) == {
        c.pk for c in segments.support_conversations
    }
    assert ids(policy.visible_conversations(ctx(segments.billing_agent))) == {
        c.pk for c in segments.billing_conversations
    }
    assert ids(policy.visible_inboxes(ctx(segments.support_agent))) == {segments.support.pk}


def test_no_grant_means_nothing(segments: Segments, make_user: Any) -> None:
    outsider = make_user("Agent", is_superuser=True, is_staff=True)
    assert not policy.visible_conversations(ctx(outsider)).exists()
    with pytest.raises(Http404):
        policy.access_conversation(ctx(outsider), segments.support_conversations[0].pk)


def test_other_segment_is_404_and_view_only_is_403(segments: Segments) -> None:
    billing_conversation = segments.billing_conversations[0]
    with pytest.raises(Http404):
        policy.access_conversation(ctx(segments.support_agent), billing_conversation.pk)
    with pytest.raises(Http404):
        policy.access_conversation(ctx(segments.support_agent), 10**12)
    with pytest.raises(Http404):
        policy.access_conversation(ctx(segments.support_agent), "not-a-number")
    viewer_inbox = Inbox.objects.create(name="Read only", channel_kind="email")
    grant_inbox(viewer_inbox, segments.support_agent, perms=("view_inbox",))
    from tests.inbox.conftest import make_conversation

    readable = make_conversation(viewer_inbox)
    assert policy.access_conversation(ctx(segments.support_agent), readable.pk) == readable
    with pytest.raises(policy.Denied):
        policy.access_conversation(ctx(segments.support_agent), readable.pk, Action.REPLY)


def test_conversation_grant_expires_without_a_job(segments: Segments) -> None:
    agent, conversation = segments.support_agent, segments.billing_conversations[0]
    grant = assign_perm("view_conversation", agent, conversation)
    grant.expires_at = timezone.now() + timedelta(hours=1)
    grant.reason = "escalation #42"
    grant.save()
    assert policy.access_conversation(ctx(agent), conversation.pk) == conversation
    assert conversation.pk in ids(policy.visible_conversations(ctx(agent)))
    ConversationUserObjectPermission.objects.filter(pk=grant.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert conversation.pk not in ids(policy.visible_conversations(ctx(agent)))
    with pytest.raises(Http404):
        policy.access_conversation(ctx(agent), conversation.pk)


def test_revoking_a_team_grant_takes_effect_at_once(segments: Segments) -> None:
    agent = segments.support_agent
    assert policy.visible_conversations(ctx(agent)).exists()
    remove_perm("view_inbox", segments.support_team, segments.support)
    assert not policy.visible_conversations(ctx(agent)).exists()


def test_leaving_the_team_removes_access(segments: Segments) -> None:
    segments.support_agent.groups.remove(segments.support_team)
    assert not policy.visible_conversations(ctx(segments.support_agent)).exists()


def test_locked_or_inactive_users_see_nothing(segments: Segments) -> None:
    agent = segments.support_agent
    agent.locked_at = timezone.now()
    assert not policy.visible_conversations(ctx(agent)).exists()
    agent.locked_at = None
    agent.is_active = False
    assert not policy.visible_conversations(ctx(agent)).exists()


def test_deleting_an_inbox_removes_its_grants(segments: Segments) -> None:
    doomed = Inbox.objects.create(name="Doomed", channel_kind="email")
    grant_inbox(doomed, segments.support_team)
    assert InboxGroupObjectPermission.objects.filter(content_object=doomed).count() == 3
    doomed.delete()
    assert not InboxGroupObjectPermission.objects.filter(content_object_id=doomed.pk).exists()


def test_visible_list_is_one_query_with_no_id_list(segments: Segments) -> None:
    with CaptureQueriesContext(connection) as queries:
        rows = list(policy.visible_conversations(ctx(segments.support_agent)))
    assert len(rows) == 3
    assert len(queries) == 1
    sql = queries[0]["sql"]
    assert "ANY(ARRAY(SELECT" in sql  # subqueries, not ids fetched into Python


def test_every_decision_is_recorded(segments: Segments) -> None:
    from audit.services import access_events_batched

    # The trail is append-only: count from here rather than empty it.
    before = AccessEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with access_events_batched():
        policy.can(ctx(segments.support_agent), Action.VIEW, segments.support_conversations[0])
        policy.can(ctx(segments.support_agent), Action.VIEW, segments.billing_conversations[0])
        assert not AccessEvent.objects.filter(pk__gt=before).exists()  # buffered until the block ends
    recorded = AccessEvent.objects.filter(pk__gt=before).order_by("pk")
    events = list(recorded.values_list("object_id", "action", "allowed"))
    assert events == [
        (segments.support_conversations[0].pk, "view", True),
        (segments.billing_conversations[0].pk, "view", False),
    ]


def test_billing_data_only_for_the_billing_role(segments: Segments) -> None:
    contact = segments.billing_conversations[0].contact
    assert policy.can_view_billing(ctx(segments.billing_agent), contact)
    assert not policy.can_view_billing(ctx(segments.support_agent), contact)
    # Even granted the billing inbox, a support-only agent gets no invoices.
    grant_inbox(segments.billing, segments.support_agent)
    assert not policy.can_view_billing(ctx(segments.support_agent), contact)


def test_counters_and_list_for_one_inbox_follow_the_grants(segments: Segments) -> None:
    from inbox import selectors

    agent = segments.support_agent
    own = selectors.ConversationFilters(inbox_id=segments.support.pk)
    other = selectors.ConversationFilters(inbox_id=segments.billing.pk)

    def counts(filters: selectors.ConversationFilters) -> dict[str, int]:
        return selectors.list_counters(ctx=ctx(agent), filters=filters).counts

    assert counts(own)["all"] == 3
    assert len(selectors.conversation_list(ctx=ctx(agent), filters=own).rows) == 3
    assert counts(other) == {
        "mine": 0,
        "unassigned": 0,
        "all": 0,
        "mine_unread": 0,
        "unassigned_unread": 0,
        "all_unread": 0,
    }
    assert not selectors.conversation_list(ctx=ctx(agent), filters=other).rows
    # One conversation of the other inbox granted on its own: exactly that one shows.
    escalated = segments.billing_conversations[0]
    assign_perm("view_conversation", agent, escalated)
    assert [c.pk for c in selectors.conversation_list(ctx=ctx(agent), filters=other).rows] == [escalated.pk]
    assert counts(other)["all"] == 1
    # A locked account counts nothing, anywhere.
    agent.locked_at = timezone.now()
    assert counts(own)["all"] == 0


def test_a_missing_id_and_another_segments_id_cost_the_same_and_are_both_recorded(
    segments: Segments, client: Any, verified_client: Any
) -> None:
    """Probing ids outside one's segment can neither time nor hear the difference from
    ids that do not exist, and monitoring sees every probe."""
    import re
    import statistics
    import time

    agent = segments.support_agent
    foreign = segments.billing_conversations[0].pk
    missing = max(c.pk for c in segments.billing_conversations) + 10_000
    web = verified_client(agent)
    # The first request of a run fills what every request shares (the blocked addresses,
    # cached in Redis): not part of either probe. Alone in a fresh run the test failed here.
    assert web.get("/").status_code == 200

    shapes = []
    for conversation_id in (foreign, missing):
        with CaptureQueriesContext(connection) as queries:
            assert web.get(f"/conversations/{conversation_id}/").status_code == 404
        # The statements' shape: the same SQL but for ids and timestamps.
        shapes.append([re.sub(r"\d+", "?", q["sql"]) for q in queries.captured_queries])
    assert shapes[0] == shapes[1]

    denied = AccessEvent.objects.filter(user_id=agent.pk, allowed=False, object_type="inbox.conversation")
    assert set(denied.values_list("object_id", flat=True)) == {foreign, missing}

    def timed(conversation_id: int) -> float:
        started = time.perf_counter()
        with pytest.raises(Http404):
            policy.access_conversation(ctx(agent), conversation_id)
        return time.perf_counter() - started

    # Interleaved, so load on the shared machine falls on both alike.
    samples: dict[int, list[float]] = {foreign: [], missing: []}
    for _ in range(50):
        for conversation_id in (foreign, missing):
            samples[conversation_id].append(timed(conversation_id))
    difference = abs(statistics.median(samples[foreign]) - statistics.median(samples[missing]))
    assert difference < 0.002, f"median difference {difference * 1000:.2f} ms"
