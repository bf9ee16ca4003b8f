"""PII masking for a role without "view PII": contact names and handles, and personal data
in message texts, are masked in the API; revealing one item is recorded and needs a fresh
second factor."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from audit.models import AccessEvent
from inbox.dlp.masking import mask_handle, mask_name, mask_text
from inbox.models import Contact, ContactIdentity, Conversation, Message
from tests.conftest import totp_of
from tests.inbox.conftest import Segments, grant_inbox

pytestmark = pytest.mark.django_db

PRIVATE = "Call me on +49 151 23456789 or mail jane.doe@example.org, card 4111 1111 1111 1111."


@pytest.fixture
def customer(segments: Segments) -> Conversation:
    contact = Contact.objects.create(name="Jane Doe")
    ContactIdentity.objects.create(contact=contact, channel_kind="email", handle="jane.doe@example.org")
    conversation = Conversation.objects.create(
        inbox=segments.support, contact=contact, subject="Call me back", last_activity_at=timezone.now()
    )
    Message.objects.create(
        conversation=conversation,
        inbox=segments.support,
        direction=Message.Direction.INBOUND,
        sender_name="Jane Doe",
        text=PRIVATE,
        delivery_status=Message.DeliveryStatus.RECEIVED,
    )
    return conversation


@pytest.fixture
def trainee(segments: Segments, make_user: Callable[..., User]) -> User:
    """Works the support inbox, in no role that carries "view PII"."""
    user = make_user(username="tina")
    grant_inbox(segments.support, user)
    return user


def test_a_remembered_masking_follows_the_dlp_settings(settings: Any) -> None:
    # Masked copies are remembered per process: a changed setting must not meet an old copy.
    text = "Our office is +49 30 1234567."
    settings.DLP_PHONE_REGION = "DE"
    settings.DLP_ALLOWED_CONTACTS = []
    assert "1234567" not in mask_text(text)
    settings.DLP_ALLOWED_CONTACTS = ["+49 30 1234567"]
    assert mask_text(text) == text
    settings.DLP_ALLOWED_CONTACTS = []
    assert "1234567" not in mask_text(text)


def test_text_with_neither_digits_nor_an_address_is_left_as_it_is() -> None:
    text = "Please call me back about my parcel, I am at home all day."
    assert mask_text(text) is text


def test_masking_keeps_the_shape_and_hides_the_data() -> None:
    masked = mask_text(PRIVATE)
    assert "23456789" not in masked and "jane.doe" not in masked and "4111 1111 1111 1111" not in masked
    assert (
        "+49 •••••••••89" in masked and "j•••••••@example.org" in masked and "4111 11•• •••• 1111" in masked
    )
    assert mask_text("Order 2024-118734 is on its way.") == "Order 2024-118734 is on its way."
    assert mask_handle("jane@example.org") == "j•••@example.org"
    assert mask_handle("+4915123456789") == "+•••••••••••89"
    assert mask_handle("janedoe_tg") == "ja••••••••"
    assert mask_name("Jane Doe") == "J••• D•••"


def test_the_api_masks_for_a_role_without_view_pii(
    customer: Conversation, trainee: User, verified_client: Callable[[User], Client]
) -> None:
    client = verified_client(trainee)
    listing = client.get("/api/v1/conversations/").json()["results"]
    [row] = [r for r in listing if r["id"] == customer.pk]
    assert row["contact"]["name"] == "J••• D•••"
    assert "23456789" not in row["last_message_text"]
    [message] = client.get(f"/api/v1/conversations/{customer.pk}/messages/").json()["results"]
    assert "+49 •••••••••89" in message["text"] and "jane.doe@" not in message["text"]
    assert message["sender_name"] == "J••• D•••"
    contact = client.get(f"/api/v1/contacts/{customer.contact_id}/").json()
    assert contact["name"] == "J••• D•••" and contact["identities"][0]["handle"] == "j•••••••@example.org"


def test_the_api_shows_everything_to_a_role_with_view_pii(
    customer: Conversation, segments: Segments, verified_client: Callable[[User], Client]
) -> None:
    client = verified_client(segments.support_agent)  # the Agent role carries "view PII"
    [message] = client.get(f"/api/v1/conversations/{customer.pk}/messages/").json()["results"]
    assert message["text"] == PRIVATE
    assert client.get(f"/api/v1/contacts/{customer.contact_id}/").json()["name"] == "Jane Doe"


def test_reveal_is_recorded_and_needs_a_fresh_factor(
    customer: Conversation, trainee: User, verified_client: Callable[[User], Client]
) -> None:
    client = verified_client(trainee)
    message = customer.messages.get()
    url = f"/api/v1/conversations/{customer.pk}/messages/{message.pk}/reveal/"
    revealed = client.post(url)
    assert revealed.status_code == 200 and revealed.json()["text"] == PRIVATE
    contact = client.post(f"/api/v1/contacts/{customer.contact_id}/reveal/").json()
    assert contact["identities"][0]["handle"] == "jane.doe@example.org"

    session = client.session
    session["portcullis_otp_verified_at"] = timezone.now().timestamp() - 3600
    session.save()
    stale = client.post(url)
    assert stale.status_code == 403 and stale.json()["code"] == "step_up_required"
    events = AccessEvent.objects.filter(user_id=trainee.pk, action="reveal").order_by("pk")
    assert [(e.object_type, e.allowed) for e in events] == [
        ("inbox.message", True),
        ("inbox.contact", True),
        ("inbox.message", False),
    ]


def test_reveal_outside_the_segment_is_a_404(
    customer: Conversation, segments: Segments, verified_client: Callable[[User], Client], make_user: Any
) -> None:
    outsider = make_user(username="otto")
    grant_inbox(segments.billing, outsider)
    client = verified_client(outsider)
    message = customer.messages.get()
    assert (
        client.post(f"/api/v1/conversations/{customer.pk}/messages/{message.pk}/reveal/").status_code == 404
    )
    billing = segments.billing_conversations[0]
    assert client.post(f"/api/v1/conversations/{billing.pk}/messages/{message.pk}/reveal/").status_code == 404
    assert client.post(f"/api/v1/contacts/{customer.contact_id}/reveal/").status_code == 404


def test_the_template_filters_mask_only_when_told() -> None:
    from django.template import Context, Template

    page = Template(
        "{% load pii %}{{ text|pii_text:masked }} / {{ handle|pii_handle:masked }}"
        " / {{ name|pii_name:masked }}"
    )
    values = {"text": PRIVATE, "handle": "jane@example.org", "name": "Jane Doe"}
    assert page.render(Context({**values, "masked": False})) == f"{PRIVATE} / jane@example.org / Jane Doe"
    shown = page.render(Context({**values, "masked": True}))
    assert "23456789" not in shown and "j•••@example.org" in shown and "J••• D•••" in shown


def test_agent_socket_events_carry_ids_not_personal_data() -> None:
    """The agent sockets are told *that* something changed; the page fetches it over HTTP,
    where the masking applies. No inbox event payload has a field for text or names."""
    from typing import get_args, get_type_hints

    from inbox.event_types import InboxEventPayload

    for payload in get_args(InboxEventPayload):
        fields = get_type_hints(payload)
        assert not {"text", "name", "handle", "subject", "sender_name"} & fields.keys(), payload


# --- The agent pages ----------------------------------------------------------------------

HTMX = {"HTTP_HX_REQUEST": "true"}
RAW = ("23456789", "jane.doe@", "4111 1111 1111 1111", "Jane Doe")


def _pages(client: Client, conversation: Conversation) -> dict[str, str]:
    """The list and the conversation, each as a pane in place and as a whole page."""
    list_url = reverse("inbox:list")
    conversation_url = reverse("inbox:conversation", kwargs={"conversation_id": conversation.pk})
    answers = {
        "list pane": client.get(list_url, **HTMX),  # type: ignore[arg-type]  # extra headers
        "list page": client.get(list_url),
        "conversation pane": client.get(conversation_url, **HTMX),  # type: ignore[arg-type]
        "conversation page": client.get(conversation_url),
    }
    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(answers, 200)
    return {name: answer.content.decode() for name, answer in answers.items()}


def test_the_pages_mask_for_a_role_without_view_pii(
    customer: Conversation, trainee: User, verified_client: Callable[[User], Client]
) -> None:
    """A stolen session of an outsourced-tier agent: the whole workspace, list and thread, as
    panes and as pages, shows no name, handle, number or address in the clear."""
    Conversation.objects.filter(pk=customer.pk).update(subject="Card 4111 1111 1111 1111, call me")
    pages = _pages(verified_client(trainee), customer)
    for name, html in pages.items():
        assert not [raw for raw in RAW if raw in html], name
    for name in ("list pane", "list page"):
        assert "J••• D•••" in pages[name] and "+49 •••••••••89" in pages[name], name
        assert "Card 4111 11•• •••• 1111, call me" in pages[name], name
    for name in ("conversation pane", "conversation page"):
        html = pages[name]
        assert "+49 •••••••••89" in html and "j•••••••@example.org" in html, name
        message = customer.messages.get()
        assert f'data-reveal-url="/api/v1/conversations/{customer.pk}/messages/{message.pk}/reveal/"' in html
        assert f'data-reveal-url="/api/v1/contacts/{customer.contact_id}/reveal/"' in html
        assert "data-reveal-step-up" in html, name
    assert "<title>Card 4111 11•• •••• 1111, call me" in pages["conversation page"]


def test_a_snippet_is_masked_before_it_is_cut(
    customer: Conversation, trainee: User, verified_client: Callable[[User], Client]
) -> None:
    """Cut first, a card across the 140th character would lose its last digits, fail Luhn and
    show its first thirteen in the clear."""
    text = "x" * 120 + " card 4111 1111 1111 1111"
    Message.objects.filter(conversation=customer).update(text=text)
    html = verified_client(trainee).get(reverse("inbox:list")).content.decode()
    assert "4111 11••" in html and "4111 1111" not in html


def test_the_pages_show_everything_to_a_role_with_view_pii(
    customer: Conversation, segments: Segments, verified_client: Callable[[User], Client]
) -> None:
    pages = _pages(verified_client(segments.support_agent), customer)
    for name in ("conversation pane", "conversation page"):
        html = pages[name]
        assert "+49 151 23456789" in html and "jane.doe@example.org" in html and "Jane Doe" in html, name
        assert "data-reveal-url" not in html and "data-reveal-step-up" not in html, name
    assert "Jane Doe" in pages["list pane"] and "+49 151 23456789" in pages["list pane"]


def test_the_pages_reveal_control_is_recorded_and_asks_for_a_fresh_factor(
    customer: Conversation, trainee: User, verified_client: Callable[[User], Client]
) -> None:
    client = verified_client(trainee)
    conversation_url = reverse("inbox:conversation", kwargs={"conversation_id": customer.pk})
    html = client.get(conversation_url).content.decode()
    message_url, contact_url = re.findall(r'data-reveal-url="([^"]+)"', html)
    assert client.post(message_url).json()["text"] == PRIVATE
    assert client.post(contact_url).json()["name"] == "Jane Doe"
    session = client.session
    session["portcullis_otp_verified_at"] = timezone.now().timestamp() - 3600
    session.save()
    assert client.post(message_url).json()["code"] == "step_up_required"
    # The page's step-up form takes a code and comes back to this conversation by a page
    # load, where Reveal works again.
    assert f'name="step_up_next" value="{conversation_url}"' in html
    assert 'name="step_up_method" value="GET"' in html
    code = totp_of(TOTPDevice.objects.get(user=trainee, confirmed=True)).now()
    confirmed = client.post(
        reverse("accounts:step_up"),
        {"step_up_next": conversation_url, "step_up_method": "GET", "token": code},
    )
    assert (confirmed.status_code, confirmed["Location"]) == (303, conversation_url)
    assert client.post(message_url).status_code == 200
    message_id = customer.messages.get().pk
    events = AccessEvent.objects.filter(user_id=trainee.pk, action="reveal").order_by("pk")
    assert [(e.object_type, e.object_id, e.allowed) for e in events] == [
        ("inbox.message", message_id, True),
        ("inbox.contact", customer.contact_id, True),
        ("inbox.message", message_id, False),
        ("inbox.message", message_id, True),
    ]
