"""Outbound DLP: detection quality on labelled replies, each action and mode through the page
and the API, notes, masking that never leaks, and the supervisors' scoped findings list."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts import roles
from accounts.models import User
from inbox.dlp import Target, scan, scan_outbound, selectors
from inbox.models import Conversation, DlpFinding, DlpKind, DlpRule, Message, Note
from tests.inbox.conftest import Segments, grant_inbox

pytestmark = pytest.mark.django_db

SAMPLES = json.loads((Path(__file__).parent / "dlp_samples.json").read_text())
CARD = "4111 1111 1111 1111"
CARD_DIGITS = CARD.replace(" ", "")
WHATSAPP = "https://wa.me/4915123456789"
MIN_PRECISION = MIN_RECALL = 0.9


@pytest.fixture(autouse=True)
def company_contacts(settings: Any) -> None:
    settings.DLP_ALLOWED_CONTACTS = ["+49 30 1234567", "acme.support@gmail.com"]
    settings.DLP_PHONE_REGION = "DE"


@pytest.fixture
def sue(segments: Segments, verified_client: Callable[[User], Client]) -> Client:
    return verified_client(segments.support_agent)


def rule(name: str, **changes: Any) -> DlpRule:
    """One of the seeded rules, changed as the test needs."""
    seeded = DlpRule.objects.get(name=name)
    for key, value in changes.items():
        setattr(seeded, key, value)
    seeded.save()
    return seeded


def reply_url(conversation: Conversation) -> str:
    return reverse("inbox:reply", kwargs={"conversation_id": conversation.pk})


def api_messages(conversation: Conversation) -> str:
    return f"/api/v1/conversations/{conversation.pk}/messages/"


def outbound(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.filter(direction=Message.Direction.OUTBOUND))


# --- Detection quality ------------------------------------------------------------------------


def test_precision_and_recall_per_kind_on_labelled_replies() -> None:
    assert len(SAMPLES) >= 40
    rules = selectors.rules_for(inbox_id=0, target=Target.REPLY)  # the seeded defaults
    counts = {kind: {"tp": 0, "fp": 0, "fn": 0} for kind in DlpKind.values}
    for sample in SAMPLES:
        expected = set(sample["kinds"])
        found = {finding.candidate.kind.value for finding in scan(sample["text"], rules)}
        for kind in counts:
            counts[kind]["tp"] += kind in found and kind in expected
            counts[kind]["fp"] += kind in found and kind not in expected
            counts[kind]["fn"] += kind not in found and kind in expected
    scores = {}
    for kind, c in counts.items():
        assert c["tp"] >= 3, f"too few {kind} samples to measure"
        scores[kind] = (c["tp"] / (c["tp"] + c["fp"]), c["tp"] / (c["tp"] + c["fn"]))
    print("\nDLP precision / recall per kind:")  # noqa: T201  # the figures are the point
    for kind, (precision, recall) in scores.items():
        print(f"  {kind:17} precision {precision:.2f}  recall {recall:.2f}")  # noqa: T201
    assert all(p >= MIN_PRECISION and r >= MIN_RECALL for p, r in scores.values()), scores


def test_keywords_nearby_raise_confidence_and_contradicting_words_lower_it() -> None:
    rules = [DlpRule(name="cards", kinds=[DlpKind.CARD], min_confidence=65)]
    [alone] = scan(f"Number {CARD} noted.", rules)
    [supported] = scan(f"Your Visa card {CARD} noted.", rules)
    [contradicted] = scan(f"Your order {CARD} noted.", rules)
    assert (
        alone.candidate.confidence,
        supported.candidate.confidence,
        contradicted.candidate.confidence,
    ) == (
        75,
        85,
        65,
    )


def test_a_card_number_stands_alone_in_the_text_to_be_found() -> None:
    rules = [DlpRule(name="cards", kinds=[DlpKind.CARD])]
    # At the very start, after a space or a letter, and at the end: found.
    for text in (CARD, f"card {CARD}", f"x{CARD}", f"{CARD}."):
        assert [f.candidate.start for f in scan(text, rules)] == [text.index("4")], text
    # Run on from a longer number or a dash on either side: a part of something else.
    for text in (f"9{CARD}", f"-{CARD}", f"{CARD}-", f"{CARD}9", f"ref 12-{CARD}"):
        assert scan(text, rules) == [], text


def test_card_is_masked_to_its_first_six_and_last_four() -> None:
    [finding] = scan(f"card {CARD}", [DlpRule(name="cards", kinds=[DlpKind.CARD])])
    assert finding.candidate.masked == "4111 11•• •••• 1111"


def test_scan_outbound_uses_the_inboxes_reply_rules(segments: Segments) -> None:
    kinds = {f.candidate.kind for f in scan_outbound(f"{WHATSAPP} and card {CARD}", segments.support)}
    assert kinds == {DlpKind.MESSENGER_LINK, DlpKind.CARD}


def test_a_rule_bound_to_an_inbox_applies_there_only(segments: Segments) -> None:
    rule("Payment card numbers", mode=DlpRule.Mode.OFF)
    bound = DlpRule.objects.create(name="Billing cards", kinds=[DlpKind.CARD], action="block", mode="enforce")
    bound.inboxes.add(segments.billing)
    assert scan_outbound(f"card {CARD}", segments.support) == []
    assert [f.rule for f in scan_outbound(f"card {CARD}", segments.billing)] == [bound]


# --- Through the page -------------------------------------------------------------------------


def test_page_blocks_a_card_number_with_the_masked_finding_and_stores_nothing(
    segments: Segments, sue: Client
) -> None:
    conversation = segments.support_conversations[0]
    response = sue.post(reply_url(conversation), {"reply": f"Your card {CARD} is on file."})
    assert response.status_code == 400
    page = response.content.decode()
    assert "4111 11•• •••• 1111" in page and "Payment card numbers" in page
    assert CARD not in page.split('name="reply"')[0]  # only the agent's own draft holds it
    assert outbound(conversation) == []
    [finding] = DlpFinding.objects.filter(conversation=conversation)
    assert (finding.outcome, finding.mode, finding.message_id) == ("blocked", "enforce", None)
    assert finding.user == segments.support_agent


def test_page_holds_a_whatsapp_link_for_a_justification_then_sends_it(
    segments: Segments, sue: Client
) -> None:
    rule("Shadow-channel invitations", mode=DlpRule.Mode.ENFORCE)
    conversation = segments.support_conversations[0]
    text = f"Our WhatsApp business line is quicker: {WHATSAPP}"
    held = sue.post(reply_url(conversation), {"reply": text})
    assert held.status_code == 400
    assert 'name="justification"' in held.content.decode()
    assert "wa.me/49•••••••••89" in held.content.decode()
    assert outbound(conversation) == []

    sent = sue.post(reply_url(conversation), {"reply": text, "justification": "Customer asked for it."})
    assert sent.status_code == 302
    [message] = outbound(conversation)
    [finding] = message.dlp_findings.all()
    assert (finding.outcome, finding.justification) == ("justified", "Customer asked for it.")
    assert DlpFinding.objects.filter(conversation=conversation, outcome="held").count() == 1


def test_page_in_monitor_mode_sends_and_records_what_it_would_have_done(
    segments: Segments, sue: Client
) -> None:
    # The seeded shadow-channel rule starts in monitor mode.
    conversation = segments.support_conversations[0]
    response = sue.post(reply_url(conversation), {"reply": f"Message me here: {WHATSAPP}"})
    assert response.status_code == 302
    [message] = outbound(conversation)
    [finding] = message.dlp_findings.all()
    assert (finding.kind, finding.action, finding.mode, finding.outcome) == (
        "messenger_link",
        "justify",
        "monitor",
        "monitored",
    )


def test_a_whatsapp_link_is_caught_before_it_is_sent(segments: Segments, sue: Client) -> None:
    shadow = rule("Shadow-channel invitations", action=DlpRule.Action.BLOCK, mode=DlpRule.Mode.ENFORCE)
    conversation = segments.support_conversations[0]
    assert sue.post(reply_url(conversation), {"reply": f"Chat: {WHATSAPP}"}).status_code == 400
    assert outbound(conversation) == []

    shadow.action = DlpRule.Action.FLAG
    shadow.save()
    assert sue.post(reply_url(conversation), {"reply": f"Chat: {WHATSAPP}"}).status_code == 302
    [message] = outbound(conversation)
    assert message.delivery_status == Message.DeliveryStatus.QUEUED
    assert [f.outcome for f in message.dlp_findings.all()] == ["flagged"]


def test_block_rule_in_monitor_mode_lets_the_card_through_and_records_it(
    segments: Segments, sue: Client
) -> None:
    rule("Payment card numbers", mode=DlpRule.Mode.MONITOR)
    conversation = segments.support_conversations[0]
    assert sue.post(reply_url(conversation), {"reply": f"card {CARD}"}).status_code == 302
    [message] = outbound(conversation)
    assert [(f.action, f.outcome) for f in message.dlp_findings.all()] == [("block", "monitored")]


def test_a_clean_reply_and_the_companys_own_contacts_record_nothing(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    text = "Call us on +49 30 1234567 or write to acme.support@gmail.com."
    assert sue.post(reply_url(conversation), {"reply": text}).status_code == 302
    assert len(outbound(conversation)) == 1
    assert not DlpFinding.objects.exists()


def test_notes_are_checked_for_cards_only_by_default(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    note_url = reverse("inbox:note", kwargs={"conversation_id": conversation.pk})
    response = sue.post(note_url, {"note": "Customer's mobile: +49 151 23456789, wa.me/4915123456789"})
    assert response.status_code == 302
    assert not DlpFinding.objects.exists()
    blocked = sue.post(note_url, {"note": f"card {CARD}"})
    assert blocked.status_code == 400 and "4111 11•• •••• 1111" in blocked.content.decode()
    assert Note.objects.filter(conversation=conversation).count() == 1


# --- Through the API --------------------------------------------------------------------------


def test_api_answers_a_block_with_its_code_and_masked_findings(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    response = sue.post(api_messages(conversation), {"text": f"card {CARD}"}, content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "dlp_blocked" and body["detail"].startswith("Not sent")
    [finding] = body["findings"]
    assert (finding["kind"], finding["masked"], finding["rule"], finding["action"], finding["mode"]) == (
        "card",
        "4111 11•• •••• 1111",
        "Payment card numbers",
        "block",
        "enforce",
    )
    assert CARD_DIGITS not in response.content.decode().replace(" ", "")
    assert outbound(conversation) == []


def test_api_asks_for_a_justification_and_accepts_one(segments: Segments, sue: Client) -> None:
    rule("Shadow-channel invitations", mode=DlpRule.Mode.ENFORCE)
    conversation = segments.support_conversations[0]
    text = {"text": "Just add me on WhatsApp, it is quicker."}
    held = sue.post(api_messages(conversation), text, content_type="application/json")
    assert held.status_code == 400 and held.json()["code"] == "dlp_justification_required"
    assert held.json()["findings"][0]["kind"] == "messenger_invite"
    sent = sue.post(
        api_messages(conversation),
        {**text, "justification": "Approved by team lead."},
        content_type="application/json",
    )
    assert sent.status_code == 201
    [finding] = DlpFinding.objects.filter(message_id=sent.json()["id"])
    assert (finding.outcome, finding.justification) == ("justified", "Approved by team lead.")


def test_api_flags_a_personal_phone_number_and_sends_it(segments: Segments, sue: Client) -> None:
    conversation = segments.support_conversations[0]
    sent = sue.post(
        api_messages(conversation), {"text": "My mobile: +49 151 23456789"}, content_type="application/json"
    )
    assert sent.status_code == 201
    [finding] = DlpFinding.objects.filter(message_id=sent.json()["id"])
    assert (finding.kind, finding.outcome, finding.masked_excerpt) == ("phone", "flagged", "+49 •••••••••89")


def test_api_monitor_mode_lets_a_card_through(segments: Segments, sue: Client) -> None:
    rule("Payment card numbers", mode=DlpRule.Mode.MONITOR)
    conversation = segments.support_conversations[0]
    sent = sue.post(api_messages(conversation), {"text": f"card {CARD}"}, content_type="application/json")
    assert sent.status_code == 201
    assert DlpFinding.objects.get(message_id=sent.json()["id"]).outcome == "monitored"


# --- Masking never leaks; supervisors see their inboxes' findings only -----------------------


@pytest.fixture
def supervisor(make_user: Callable[..., User], segments: Segments) -> User:
    user = make_user(roles.SUPERVISOR, is_staff=True, username="sam")
    grant_inbox(segments.support, user, perms=("view_inbox", "reply_inbox", "manage_inbox"))
    return user


def test_the_full_number_is_in_no_finding_log_or_admin_page(
    segments: Segments,
    sue: Client,
    supervisor: User,
    verified_client: Callable[[User], Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rule("Payment card numbers", mode=DlpRule.Mode.MONITOR)  # so it is sent, and shown in the thread
    conversation = segments.support_conversations[0]
    with caplog.at_level(logging.DEBUG):
        assert sue.post(reply_url(conversation), {"reply": f"Card {CARD} noted."}).status_code == 302
        assert (
            sue.post(reply_url(conversation), {"reply": f"Card {CARD}", "justification": CARD}).status_code
            == 302
        )
    findings = list(DlpFinding.objects.values())
    assert len(findings) == 2
    for finding in findings:
        assert all(CARD_DIGITS not in str(value).replace(" ", "") for value in finding.values())
    logged = [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    assert any("4111 11•• •••• 1111" in line for line in logged)  # the findings were logged, masked
    assert all(CARD_DIGITS not in line.replace(" ", "") for line in logged)
    admin = verified_client(supervisor)
    pages = [admin.get("/admin/inbox/dlpfinding/")] + [
        admin.get(f"/admin/inbox/dlpfinding/{finding['id']}/change/") for finding in findings
    ]
    for page in pages:
        assert page.status_code == 200
        assert CARD_DIGITS not in page.content.decode().replace(" ", "")
    assert "4111 11•• •••• 1111" in pages[0].content.decode()


def test_supervisors_see_findings_of_their_inboxes_only_and_cannot_change_them(
    segments: Segments, supervisor: User, verified_client: Callable[[User], Client]
) -> None:
    billing_agent = verified_client(segments.billing_agent)
    billing = segments.billing_conversations[0]
    assert billing_agent.post(reply_url(billing), {"reply": f"card {CARD}"}).status_code == 400
    [finding] = DlpFinding.objects.all()
    admin = verified_client(supervisor)
    listing = admin.get("/admin/inbox/dlpfinding/")
    assert listing.status_code == 200 and "4111 11••" not in listing.content.decode()
    assert admin.get(f"/admin/inbox/dlpfinding/{finding.pk}/change/").status_code in (302, 404)
    assert admin.post(f"/admin/inbox/dlpfinding/{finding.pk}/delete/").status_code in (302, 403, 404)
    assert DlpFinding.objects.filter(pk=finding.pk).exists()


def test_only_administrators_change_dlp_rules(
    supervisor: User, make_user: Callable[..., User], verified_client: Callable[[User], Client]
) -> None:
    shadow = DlpRule.objects.get(name="Shadow-channel invitations")
    change_url = f"/admin/inbox/dlprule/{shadow.pk}/change/"
    form = {"name": shadow.name, "kinds": ["messenger_link"], "min_confidence": 75, "action": "block"}
    form |= {"mode": "enforce"}
    assert verified_client(supervisor).post(change_url, form).status_code == 403
    shadow.refresh_from_db()
    assert shadow.mode == "monitor"
    administrator = make_user(roles.ADMINISTRATOR, is_staff=True, username="ada")
    assert verified_client(administrator).post(change_url, form).status_code == 302
    shadow.refresh_from_db()
    assert (shadow.mode, shadow.action, shadow.kinds) == ("enforce", "block", ["messenger_link"])
