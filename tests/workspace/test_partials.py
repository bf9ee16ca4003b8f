"""The workspace's in-place requests: one pane per response, the same policy as the pages,
read state per agent, and query counts that do not grow with the data."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import roles
from accounts.models import User
from inbox import forms
from inbox.models import Conversation, ConversationRead, Inbox, Label, Message, Note
from inbox.views import LIST_CHANGED_EVENT
from tests.inbox.conftest import Segments, grant_inbox, make_conversation
from tests.inbox.test_pages import bulk_conversations

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
LIST_URL = reverse("inbox:list")


def url(conversation: Conversation, action: str = "conversation") -> str:
    return reverse(f"inbox:{action}", kwargs={"conversation_id": conversation.pk})


@pytest.fixture
def sue(segments: Segments, verified_client: Callable[[User], Client]) -> Client:
    return verified_client(segments.support_agent)


def unread_rows(client: Client, query: str = "") -> set[int]:
    response = client.get(LIST_URL + query, **HTMX)
    assert response.status_code == 200
    return {row["id"] for row in response.context["rows"] if row["unread"]}


# --- One pane per in-place request --------------------------------------------------------


def test_the_list_and_the_conversation_are_panes_in_place_and_pages_otherwise(
    segments: Segments, sue: Client
) -> None:
    conversation = segments.support_conversations[0]
    pane = sue.get(LIST_URL, **HTMX)
    assert pane.status_code == 200
    html = pane.content.decode()
    assert "<html" not in html and 'data-pane="list"' in html
    assert f'hx-get="{url(conversation)}"' in html  # rows open in place

    assert (
        f'hx-get="{url(conversation)}?scope=all"' in sue.get(LIST_URL + "?scope=all", **HTMX).content.decode()
    )
    pane = sue.get(url(conversation) + "?scope=all", **HTMX)
    html = pane.content.decode()
    assert pane.status_code == 200 and "<html" not in html
    assert 'data-pane="conversation"' in html and "printer jam 0" in html
    assert f'data-pane-url="{url(conversation)}?scope=all"' in html

    # A whole page at the same URL, for a reload, a link, or the back button after a miss.
    for headers in ({}, {**HTMX, "HTTP_HX_HISTORY_RESTORE_REQUEST": "true"}):
        page = sue.get(url(conversation) + "?scope=all", **headers).content.decode()
        assert "<html" in page and 'data-pane="conversation"' in page
        # The list beside it keeps the conversation's query and comes in a request of its own.
        assert f'hx-get="{LIST_URL}?scope=all" hx-trigger="load"' in page
    assert "<html" in sue.get(LIST_URL).content.decode()


def test_an_action_in_place_answers_with_the_pane_and_tells_the_list(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    response = sue.post(url(conversation, "reply"), {"reply": "On its way."}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and "Reply queued for sending." in html and "On its way." in html
    assert LIST_CHANGED_EVENT in json.loads(response["HX-Trigger"])
    assert Message.objects.filter(conversation=conversation, text="On its way.").exists()

    response = sue.post(url(conversation, "status"), {"status": "resolved"}, **HTMX)
    assert response.status_code == 200 and "Status: Resolved." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.RESOLVED
    # Without htmx the same post is the page's post-redirect-get, as before.
    response = sue.post(url(conversation, "note"), {"note": "for the team"})
    assert response.status_code == 302 and response["Location"] == url(conversation)


def test_refusals_in_place_stay_in_the_pane_with_the_reason(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    response = sue.post(url(conversation, "reply"), {"reply": "   "}, **HTMX)
    assert response.status_code == 400 and "HX-Trigger" not in response
    assert "This field is required." in response.content.decode()

    read_only = Inbox.objects.create(name="Read only", channel_kind="email")
    grant_inbox(read_only, segments.support_agent, perms=("view_inbox",))
    watched = make_conversation(read_only, text="look but do not touch")
    response = sue.post(url(watched, "reply"), {"reply": "sneaky answer"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 403 and "<html" not in html
    assert "You may not reply in this conversation." in html and 'data-pane="conversation"' in html
    assert not Message.objects.filter(text="sneaky answer").exists()


def test_a_stolen_agent_session_reaches_no_pane_outside_its_segment(segments: Segments, sue: Client) -> None:
    """The attacker holds Sue's session and asks for the other segment's panes directly."""
    billing = segments.billing_conversations[0]
    assert sue.get(url(billing), **HTMX).status_code == 404
    assert (
        sue.post(url(billing, "assign"), {"assignee": segments.support_agent.pk}, **HTMX).status_code == 404
    )
    # Nothing leaks through the read state either: no mark, and no billing row in the list.
    assert not ConversationRead.objects.filter(conversation=billing).exists()
    listed = sue.get(LIST_URL + f"?inbox={segments.billing.pk}", **HTMX)
    assert listed.status_code == 400  # not an inbox Sue may choose


def test_customer_text_in_the_panes_is_escaped(segments: Segments, sue: Client) -> None:
    """Subjects, names, messages and labels come from outside (a customer writes them): the
    panes print them as text, never as markup, however the rows are put together."""
    script = "<script>alert(1)</script>"
    conversation = make_conversation(segments.support, text=script)
    conversation.contact.name = '<img src=x onerror="alert(2)">'
    conversation.contact.save()
    conversation.labels.add(Label.objects.create(name="<b>label</b>"))
    for pane in (sue.get(LIST_URL, **HTMX), sue.get(url(conversation), **HTMX)):
        html = pane.content.decode()
        assert pane.status_code == 200 and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>label" not in html
    assert "&lt;b&gt;label&lt;/b&gt;" in sue.get(LIST_URL, **HTMX).content.decode()


# --- Unread per agent ----------------------------------------------------------------------


def test_unread_is_per_agent_and_returns_with_new_activity(
    segments: Segments, sue: Client, verified_client: Callable[[User], Client], make_user: Callable[..., User]
) -> None:
    tom = make_user(roles.AGENT, username="tom")
    tom.groups.add(segments.support_team)
    tom_client = verified_client(tom)
    first, second, third = segments.support_conversations
    # Sue's own: once she has read it, "mine" has nothing unread.
    Conversation.objects.filter(pk=first.pk).update(assignee=segments.support_agent)
    everything = {first.pk, second.pk, third.pk}
    assert unread_rows(sue) == everything

    sue.get(url(first), **HTMX)
    assert unread_rows(sue) == {second.pk, third.pk}
    assert unread_rows(tom_client) == everything  # Sue's reading is hers alone

    response = sue.get(LIST_URL, **HTMX)
    tabs = {tab["scope"]: (tab["count"], tab["unread"]) for tab in response.context["tabs"]}
    assert tabs == {"mine": (1, 0), "unassigned": (2, 2), "all": (3, 2)}
    assert 'data-unread="2"' in response.content.decode()  # what the tab title shows
    assert 'class="unread"' in response.content.decode()

    # Something new arrives on the conversation Sue read: unread for her again.
    Conversation.objects.filter(pk=first.pk).update(last_activity_at=timezone.now() + timedelta(seconds=1))
    assert unread_rows(sue) == everything
    # Her own reply re-renders the pane she is looking at: still read for her.
    sue.post(url(second, "reply"), {"reply": "done"}, **HTMX)
    assert second.pk not in unread_rows(sue)


# --- Snooze presets ------------------------------------------------------------------------


def test_snooze_presets_are_later_today_tomorrow_morning_and_next_monday() -> None:
    wednesday = datetime(2026, 12, 2, 14, 37, 12, tzinfo=UTC)
    presets = {preset.label: preset.until for preset in forms.snooze_presets(wednesday)}
    assert presets == {
        "Later today": datetime(2026, 12, 2, 17, 37, tzinfo=UTC),
        "Tomorrow": datetime(2026, 12, 3, 9, 0, tzinfo=UTC),
        "Next week": datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
    }


def test_a_snooze_preset_posts_a_time_the_status_form_accepts(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    html = sue.get(url(conversation), **HTMX).content.decode()
    tomorrow = forms.snooze_presets()[1].until
    value = tomorrow.strftime("%Y-%m-%dT%H:%M")
    assert f'name="snoozed_until" value="{value}"' in html
    response = sue.post(url(conversation, "status"), {"status": "snoozed", "snoozed_until": value}, **HTMX)
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.SNOOZED and conversation.snoozed_until == tomorrow


# --- Query counts of the partials ----------------------------------------------------------

# The labels for the bulk bar are one query of their own; each pane asks "view PII" once
# (masking), whatever the number of rows. The caller's scope is settled once for the list
# and its counters; the tabs and the inbox filter's unread counts are one query for every inbox.
# The conversation comes with its inbox, contact and assignee in the deciding query, and the
# billing decision asks the caller's roles in one EXISTS.
LIST_PANE_QUERIES = 12
CONVERSATION_PANE_QUERIES = 17


def test_list_pane_query_count_does_not_grow(
    segments: Segments, sue: Client, django_assert_num_queries: Any
) -> None:
    label = Label.objects.create(name="bulk")
    newest = timezone.now()
    bulk_conversations(segments.support, 5, newest=newest, label=label)
    sue.get(LIST_URL, **HTMX)  # warm: the session's first request may refresh its last-seen
    for conversation in Conversation.objects.filter(inbox=segments.support)[:3]:
        sue.get(url(conversation), **HTMX)  # some read, some not
    with django_assert_num_queries(LIST_PANE_QUERIES):
        small = sue.get(LIST_URL, **HTMX)
    bulk_conversations(segments.support, 200, newest=newest, label=label, offset=5)
    with django_assert_num_queries(LIST_PANE_QUERIES):
        large = sue.get(LIST_URL, **HTMX)
    assert len(small.context["rows"]) == 8 and len(large.context["rows"]) == 50


def test_conversation_pane_query_count_does_not_grow(
    segments: Segments, sue: Client, django_assert_num_queries: Any
) -> None:
    conversation = segments.support_conversations[0]
    conversation.labels.add(Label.objects.create(name="vip"))
    # Named by the pane: loaded with the conversation, not on its own.
    Conversation.objects.filter(pk=conversation.pk).update(assignee=segments.support_agent)

    def add_entries(count: int) -> None:
        Message.objects.bulk_create(
            Message(
                conversation=conversation,
                inbox=segments.support,
                direction=Message.Direction.INBOUND,
                text=f"entry {i}",
                delivery_status=Message.DeliveryStatus.RECEIVED,
            )
            for i in range(count)
        )
        Note.objects.bulk_create(
            Note(conversation=conversation, author=segments.support_agent, text=f"note {i}")
            for i in range(count)
        )

    add_entries(3)
    sue.get(url(conversation), **HTMX)
    with django_assert_num_queries(CONVERSATION_PANE_QUERIES):
        sue.get(url(conversation), **HTMX)
    add_entries(300)
    with django_assert_num_queries(CONVERSATION_PANE_QUERIES):
        response = sue.get(url(conversation), **HTMX)
    assert len(response.context["thread"]) > 600


def test_the_assignee_menu_offers_exactly_who_holds_the_inbox(
    segments: Segments, sue: Client, make_user: Callable[..., User]
) -> None:
    # Offered: the inbox's team, named by full name or else username. Not offered: another
    # inbox's agent, a locked or inactive member, a service account.
    named = make_user(username="alice", first_name="Alice", last_name="Agent")
    locked = make_user(username="lou", locked_at=timezone.now())
    gone = make_user(username="gus", is_active=False)
    robot = make_user(username="robot", is_service_account=True)
    for user in (named, locked, gone, robot):
        user.groups.add(segments.support_team)

    response = sue.get(url(segments.support_conversations[0]), **HTMX)

    menu = re.search(r'<select id="assignee"[^>]*>(.*?)</select>', response.content.decode(), re.S)
    assert menu is not None
    offered = re.findall(r'<option value="(\d+)"[^>]*>([^<]*)</option>', menu.group(1))
    assert offered == [(str(named.pk), "Alice Agent"), (str(segments.support_agent.pk), "sue")]


# --- Context: the contact's other conversations; attachments ------------------------------

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201e5273f9e0000000049454e44ae426082"
)


def test_the_context_pane_lists_only_the_contacts_conversations_the_agent_may_see(
    segments: Segments, sue: Client
) -> None:
    conversation = segments.support_conversations[0]
    contact = conversation.contact
    earlier = Conversation.objects.create(
        inbox=segments.support, contact=contact, subject="Toner order", last_activity_at=timezone.now()
    )
    Conversation.objects.create(
        inbox=segments.billing, contact=contact, subject="Overdue invoice", last_activity_at=timezone.now()
    )
    html = sue.get(url(conversation), **HTMX).content.decode()
    assert "Toner order" in html and f'hx-get="{url(earlier)}"' in html
    assert "Overdue invoice" not in html  # another segment's: not even its subject


def attachment_in(conversation: Conversation, *, content: bytes, filename: str, content_type: str) -> Any:
    from inbox.models import Attachment
    from inbox.services import attachment_file_store

    message = Message.objects.filter(conversation=conversation).first()
    path, digest = attachment_file_store(content=content, extension=filename.rsplit(".", 1)[-1])
    return Attachment.objects.create(
        message=message,
        file=path,
        filename=filename,
        content_type=content_type,
        size=len(content),
        sha256=digest,
    )


def test_attachments_are_linked_previewed_and_downloaded_through_the_policy(
    segments: Segments, sue: Client, settings: Any, tmp_path: Any
) -> None:
    from audit.models import AccessEvent

    settings.MEDIA_ROOT = str(tmp_path)
    conversation = segments.support_conversations[0]
    image = attachment_in(conversation, content=PNG, filename="receipt.png", content_type="image/png")
    document = attachment_in(
        conversation, content=b"%PDF-1.4 x", filename="terms.pdf", content_type="application/pdf"
    )
    html = sue.get(url(conversation), **HTMX).content.decode()
    image_url = reverse("inbox:attachment", args=[conversation.pk, image.pk])
    document_url = reverse("inbox:attachment", args=[conversation.pk, document.pk])
    assert f'<img src="{image_url}" alt="receipt.png"' in html
    assert f'<a href="{document_url}" download>terms.pdf</a>' in html

    response = sue.get(image_url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png" and "sandbox" in response["Content-Security-Policy"]
    response = sue.get(document_url)
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    downloads = AccessEvent.objects.filter(object_type="inbox.attachment", action="download")
    assert sorted(downloads.values_list("object_id", "allowed")) == [(image.pk, True), (document.pk, True)]


def test_a_stolen_session_gets_no_file_of_another_segment_by_guessing_ids(
    segments: Segments, sue: Client
) -> None:
    from audit.models import AccessEvent

    billing = segments.billing_conversations[0]
    secret = attachment_in(billing, content=PNG, filename="card.png", content_type="image/png")
    mine = segments.support_conversations[0]
    # Neither through the other segment's conversation nor through one's own.
    assert sue.get(reverse("inbox:attachment", args=[billing.pk, secret.pk])).status_code == 404
    assert sue.get(reverse("inbox:attachment", args=[mine.pk, secret.pk])).status_code == 404
    refused = AccessEvent.objects.filter(object_type="inbox.attachment", allowed=False)
    assert list(refused.values_list("object_id", flat=True)) == [secret.pk]


# --- Bulk actions -----------------------------------------------------------------------------


def test_bulk_actions_decide_each_conversation_and_report_what_was_refused(
    segments: Segments, sue: Client
) -> None:
    first, second, _ = segments.support_conversations
    billing = segments.billing_conversations[0]
    read_only = Inbox.objects.create(name="Read only", channel_kind="email")
    grant_inbox(read_only, segments.support_agent, perms=("view_inbox",))
    watched = make_conversation(read_only, text="look only")
    ticked = [first.pk, second.pk, billing.pk, watched.pk]

    response = sue.post(reverse("inbox:bulk"), {"conversation": ticked, "action": "assign_me"}, **HTMX)
    assert response.status_code == 200 and LIST_CHANGED_EVENT in json.loads(response["HX-Trigger"])
    html = response.content.decode()
    assert "2 done</strong>, 2 refused" in html
    assert f"Conversation {billing.pk}: Not found, or not yours to see." in html
    assert f"Conversation {watched.pk}: You may not assign conversations in this inbox." in html
    assigned = Conversation.objects.filter(assignee=segments.support_agent)
    assert sorted(assigned.values_list("pk", flat=True)) == sorted([first.pk, second.pk])

    vip = Label.objects.create(name="vip")
    first.labels.add(Label.objects.create(name="printer"))
    response = sue.post(
        reverse("inbox:bulk"),
        {"conversation": [first.pk, second.pk], "action": "label", "label": vip.pk},
        **HTMX,
    )
    assert "2 done</strong>." in response.content.decode()
    assert sorted(first.labels.values_list("name", flat=True)) == ["printer", "vip"]  # added, none lost
    assert list(second.labels.values_list("name", flat=True)) == ["vip"]

    urgent = {"conversation": [first.pk, watched.pk], "action": "priority", "priority": "3"}
    html = sue.post(reverse("inbox:bulk"), urgent, **HTMX).content.decode()
    assert "1 done</strong>, 1 refused" in html
    assert f"Conversation {watched.pk}: You may not change this conversation&#x27;s priority." in html
    assert Conversation.objects.get(pk=first.pk).priority == Conversation.Priority.URGENT
    assert Conversation.objects.get(pk=watched.pk).priority == Conversation.Priority.NORMAL

    response = sue.post(
        reverse("inbox:bulk"), {"conversation": [first.pk], "action": "status", "status": "resolved"}
    )
    assert response.status_code == 200 and "<html" in response.content.decode()  # without JavaScript
    first.refresh_from_db()
    assert first.status == Conversation.Status.RESOLVED


@pytest.mark.parametrize(
    "data",
    [
        {"action": "assign_me"},
        {"conversation": ["abc"], "action": "assign_me"},
        {"conversation": [str(2**63)], "action": "assign_me"},
        {"conversation": [str(pk) for pk in range(1, 102)], "action": "assign_me"},
        {"conversation": ["1"], "action": "drop_table"},
        {"conversation": ["1"], "action": "status"},
        {"conversation": ["1"], "action": "status", "status": "snoozed"},
        {"conversation": ["1"], "action": "label", "label": "999999"},
        {"conversation": ["1"], "action": "priority"},
        {"conversation": ["1"], "action": "priority", "priority": "9"},
    ],
)
def test_malformed_bulk_posts_are_a_400_with_nothing_changed(
    segments: Segments, sue: Client, data: dict[str, Any]
) -> None:
    response = sue.post(reverse("inbox:bulk"), data, **HTMX)
    assert response.status_code == 400 and "Nothing was changed." in response.content.decode()
    assert not Conversation.objects.filter(assignee__isnull=False).exists()


def test_a_step_up_asked_in_place_takes_the_whole_page_and_keeps_the_post(
    segments: Segments, verified_client: Callable[[User], Client]
) -> None:
    from inbox.models import PolicyRule

    step = PolicyRule.objects.create(name="fresh factor", mode="enforce", effect="step_up", actions=["reply"])
    step.inboxes.set([segments.billing])
    client = verified_client(segments.billing_agent)
    session = client.session
    session["portcullis_otp_verified_at"] = timezone.now().timestamp() - 3600
    session.save()
    conversation = segments.billing_conversations[0]
    response = client.post(url(conversation, "reply"), {"reply": "Your invoice, attached."}, **HTMX)
    assert response.status_code == 403
    # Not squeezed into the conversation pane: the question replaces the page, and its plain
    # form carries the reply on to the step-up (then to the reply itself).
    assert response["HX-Retarget"] == "body" and response["HX-Reswap"] == "innerHTML"
    assert b'name="reply" value="Your invoice, attached."' in response.content
    assert not Message.objects.filter(text="Your invoice, attached.").exists()
