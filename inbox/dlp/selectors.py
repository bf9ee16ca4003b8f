"""Reads: the DLP rules in force for an inbox and a kind of text."""

from __future__ import annotations

from django.db.models import Q

from inbox.dlp.scanner import Target
from inbox.models import DlpRule


def rules_for(*, inbox_id: int, target: Target) -> list[DlpRule]:
    """The rules on in this inbox (their own or every inbox's), for a reply, a note or a
    customer's message (redaction rules, and only they, apply to those)."""
    rules = (
        DlpRule.objects.exclude(mode=DlpRule.Mode.OFF)
        .filter(Q(inboxes__isnull=True) | Q(inboxes=inbox_id))
        .distinct()
        .order_by("name")
    )
    if target == Target.INBOUND:
        return list(rules.filter(action=DlpRule.Action.REDACT))
    rules = rules.exclude(action=DlpRule.Action.REDACT)
    if target == Target.NOTE:
        rules = rules.filter(applies_to_notes=True)
    return list(rules)
