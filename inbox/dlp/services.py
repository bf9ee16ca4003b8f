"""Writes: screening an outbound text and recording what was found, masked."""

from __future__ import annotations

import logging

from django.db import transaction

from inbox.dlp import selectors
from inbox.dlp.scanner import Target, Verdict, judge, scan
from inbox.models import Conversation, DlpFinding, DlpRule, Message, Note
from inbox.policy import AccessContext

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
