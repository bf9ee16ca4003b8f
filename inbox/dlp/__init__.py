"""Outbound data-loss prevention: what agents write is scanned before it is stored.

Detectors (one per kind, `detectors.DETECTORS`) find candidates; the rules in force
(`DlpRule`, data edited in the admin) turn them into findings; the verdict blocks, holds
for a justification, or lets the text through and records what was found, masked.
"""

from __future__ import annotations

from inbox.dlp import selectors
from inbox.dlp.scanner import Finding, FindingPayload, Target, Verdict, scan
from inbox.dlp.services import findings_record, outbound_screen
from inbox.models import Inbox


def scan_outbound(text: str, inbox: Inbox) -> list[Finding]:
    """The findings of the inbox's reply rules in `text`: for the outbound send pipeline,
    which checks what actually leaves (a text may change between queueing and sending)."""
    return scan(text, selectors.rules_for(inbox_id=inbox.pk, target=Target.REPLY))


__all__ = [
    "Finding",
    "FindingPayload",
    "Target",
    "Verdict",
    "findings_record",
    "outbound_screen",
    "scan",
    "scan_outbound",
]
