"""Outbound data-loss prevention: what agents write is scanned before it is stored.

Detectors (one per kind, `detectors.DETECTORS`) find candidates; the rules in force
(`DlpRule`, data edited in the admin) turn them into findings; the verdict blocks, holds
for a justification, or lets the text through and records what was found, masked.
"""

from __future__ import annotations

from inbox.dlp.scanner import Finding, FindingPayload, Target, Verdict, scan
from inbox.dlp.services import (
    Redaction,
    findings_record,
    inbound_findings_record,
    inbound_redact,
    inbound_redactions,
    inbound_redactor,
    outbound_screen,
    outbound_send_screen,
    pii_reveal,
    scan_outbound,
    thread_message_for_reveal,
)

__all__ = [
    "Finding",
    "FindingPayload",
    "Redaction",
    "Target",
    "Verdict",
    "findings_record",
    "inbound_findings_record",
    "inbound_redact",
    "inbound_redactions",
    "inbound_redactor",
    "outbound_screen",
    "outbound_send_screen",
    "pii_reveal",
    "scan",
    "scan_outbound",
    "thread_message_for_reveal",
]
