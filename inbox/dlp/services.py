"""Writes: screening an outbound text and recording what was found, masked."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.http import Http404

from inbox.dlp import selectors
from inbox.dlp.scanner import Finding, Target, Verdict, judge, masked_copy, scan
from inbox.models import Contact, Conversation, DlpFinding, DlpRule, Inbox, Message, Note
from inbox.policy import AccessContext, StepUpRequired, access_record
from inbox.policy.decisions import STEP_UP_MESSAGE

logger = logging.getLogger(__name__)

MAX_JUSTIFICATION_LENGTH = 1000


def outbound_screen(
    *, ctx: AccessContext, conversation: Conversation, text: str, target: Target, justification: str = ""
) -> Verdict:
    """Scan what an agent is about to store. A refusal is recorded here, at once: the
    attempt matters to a supervisor even though nothing is stored."""
    rules = selectors.rules_for(inbox_id=conversation.inbox_id, target=target)
    verdict = judge(target, scan(text, rules), justification.strip()[:MAX_JUSTIFICATION_LENGTH])
    if verdict.refused:
        with transaction.atomic():
            findings_record(verdict, ctx=ctx, conversation=conversation)
    return verdict


def scan_outbound(text: str, inbox: Inbox) -> list[Finding]:
    """The findings of the inbox's reply rules in `text`."""
    return scan(text, selectors.rules_for(inbox_id=inbox.pk, target=Target.REPLY))


def outbound_send_screen(message: Message) -> str | None:
    """The last look, in the send pipeline: the text as it leaves, against the rules in
    force now (a rule may have been enforced, or the text changed, since it was queued).
    A justification the author gave at queueing still counts. Returns why the reply must
    not go out, after recording the refusal with the message; None lets it go."""
    given = (
        DlpFinding.objects.filter(message=message)
        .exclude(justification="")
        .values_list("justification", flat=True)
        .first()
    )
    verdict = judge(Target.REPLY, scan_outbound(message.text, message.inbox), given or "")
    if not verdict.refused:
        return None
    if message.sender_user is not None:
        findings_record(
            verdict,
            ctx=AccessContext.for_task(message.sender_user),
            conversation=message.conversation,
            message=message,
        )
    return verdict.explanation()


def findings_record(
    verdict: Verdict,
    *,
    ctx: AccessContext,
    conversation: Conversation,
    message: Message | None = None,
    note: Note | None = None,
) -> None:
    if not verdict.findings:
        return
    DlpFinding.objects.bulk_create(
        DlpFinding(
            inbox_id=conversation.inbox_id,
            conversation=conversation,
            message=message,
            note=note,
            rule=finding.rule,
            rule_name=finding.rule.name,
            kind=finding.candidate.kind,
            masked_excerpt=finding.candidate.masked,
            confidence=finding.candidate.confidence,
            action=finding.rule.action,
            mode=finding.rule.mode,
            outcome=verdict.outcome(finding),
            justification=verdict.justification if finding.rule.action == DlpRule.Action.JUSTIFY else "",
            user=ctx.user,
        )
        for finding in verdict.findings
    )
    # Masked values and ids only: a log line is a copy, and copies must not hold the data.
    logger.info(
        "dlp findings",
        extra={
            "conversation_id": conversation.pk,
            "user_id": ctx.user.pk,
            "target": verdict.target.value,
            "refusal": verdict.code or "",
            "findings": [f"{f.candidate.kind}:{f.candidate.masked}:{f.rule.name}" for f in verdict.findings],
        },
    )


@dataclass(frozen=True)
class Redaction:
    """A customer's message as it may be stored, and what the inbound rules found in it."""

    text: str
    html: str
    subject: str
    findings: tuple[Finding, ...]


def _redacted(text: str, rules: list[DlpRule]) -> tuple[str, list[Finding]]:
    """The text with each enforced finding replaced by its masked form (a card keeps its
    first six and last four digits); monitor-mode findings are found, not replaced."""
    findings = scan(text, rules, skip_quoted=False)
    return masked_copy(text, [f.candidate for f in findings if f.enforced]), findings


def inbound_redact(*, inbox: Inbox, text: str, html: str, subject: str) -> Redaction:
    """Apply the inbox's redaction rules to a customer's message before it is stored: the
    original of an enforced finding is never written."""
    return inbound_redactions(inbox=inbox, parts=[(text, html, subject)])[0]


def inbound_redactions(*, inbox: Inbox, parts: Sequence[tuple[str, str, str]]) -> list[Redaction]:
    """`inbound_redact` for many messages of one inbox ((text, html, subject) each), its
    rules read once."""
    rules = selectors.rules_for(inbox_id=inbox.pk, target=Target.INBOUND)
    if not rules:
        return [Redaction(text, html, subject, ()) for text, html, subject in parts]
    redactions = []
    for text, html, subject in parts:
        redacted, found = _redacted(text, rules)
        # The HTML part and the subject carry the same data; their findings are the text's.
        redactions.append(
            Redaction(redacted, _redacted(html, rules)[0], _redacted(subject, rules)[0], tuple(found))
        )
    return redactions


def inbound_redactor(*, inbox_id: int) -> Callable[[str], str] | None:
    """What scrubs a channel's raw copy of a delivery the way its message was redacted: the
    inbox's enforced redaction rules, applied to one text. None when none is enforced (in
    monitor mode the message keeps its text, and so does the raw copy)."""
    rules = [
        rule
        for rule in selectors.rules_for(inbox_id=inbox_id, target=Target.INBOUND)
        if rule.mode == DlpRule.Mode.ENFORCE
    ]
    if not rules:
        return None
    return lambda text: _redacted(text, rules)[0]


def inbound_findings_record(redaction: Redaction, *, message: Message) -> None:
    if not redaction.findings:
        return
    DlpFinding.objects.bulk_create(
        DlpFinding(
            inbox_id=message.inbox_id,
            conversation_id=message.conversation_id,
            message=message,
            rule=finding.rule,
            rule_name=finding.rule.name,
            kind=finding.candidate.kind,
            masked_excerpt=finding.candidate.masked,
            confidence=finding.candidate.confidence,
            action=finding.rule.action,
            mode=finding.rule.mode,
            outcome=DlpFinding.Outcome.REDACTED if finding.enforced else DlpFinding.Outcome.MONITORED,
        )
        for finding in redaction.findings
    )


def pii_reveal(*, ctx: AccessContext, obj: Message | Contact) -> None:
    """Showing one masked item unmasked, to a caller without "view PII": an access of its
    own, recorded, and one that needs a fresh second factor where PII_REVEAL_STEP_UP."""
    object_type = obj._meta.label_lower
    allowed = not settings.PII_REVEAL_STEP_UP or ctx.step_up_fresh
    access_record(ctx, object_type, obj.pk, "reveal", allowed)
    if not allowed:
        raise StepUpRequired(STEP_UP_MESSAGE)
    logger.info("pii revealed", extra={"user_id": ctx.user.pk, "object": f"{object_type}:{obj.pk}"})


def thread_message_for_reveal(*, ctx: AccessContext, conversation: Conversation, message_id: int) -> Message:
    """A message of a conversation the caller has loaded through the policy, revealed."""
    message = conversation.messages.filter(pk=message_id).select_related("sender_user").first()
    if message is None:
        raise Http404
    pii_reveal(ctx=ctx, obj=message)
    return message
