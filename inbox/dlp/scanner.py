"""The scan (text + rules → findings) and the verdict on them. Pure: no queries, no writes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypedDict

from inbox.dlp.detectors import DETECTORS, Candidate
from inbox.models import DlpFinding, DlpRule

Action, Mode, Outcome = DlpRule.Action, DlpRule.Mode, DlpFinding.Outcome
RefusalCode = Literal["dlp_blocked", "dlp_justification_required"]

# Email-style quoting ("> …") is the customer's own text, not what the agent writes.
QUOTED_LINE = re.compile(r"^[ \t]*>.*$", re.MULTILINE)


class Target(StrEnum):
    REPLY = "reply"
    NOTE = "note"
    # A customer's message at ingest, where the rules redact rather than hold.
    INBOUND = "inbound"


class FindingPayload(TypedDict):
    kind: str
    label: str
    masked: str
    confidence: int
    confidence_label: str
    rule: str
    action: str
    mode: str
    start: int
    end: int


@dataclass(frozen=True)
class Finding:
    candidate: Candidate
    rule: DlpRule

    @property
    def enforced(self) -> bool:
        return self.rule.mode == Mode.ENFORCE

    def payload(self) -> FindingPayload:
        candidate = self.candidate
        return {
            "kind": candidate.kind.value,
            "label": candidate.kind.label,
            "masked": candidate.masked,
            "confidence": int(candidate.confidence),
            "confidence_label": candidate.confidence.label,
            "rule": self.rule.name,
            "action": self.rule.action,
            "mode": self.rule.mode,
            "start": candidate.start,
            "end": candidate.end,
        }


def _unquoted(text: str) -> str:
    """The text with quoted lines blanked out, so every span still points into `text`."""
    return QUOTED_LINE.sub(lambda line: " " * len(line.group()), text)


def _outermost(candidates: list[Candidate]) -> list[Candidate]:
    """Drop a candidate lying inside a longer one: the digits of a wa.me link or of an IBAN
    are that link or that IBAN, not a phone number of their own."""
    return [
        inner
        for inner in candidates
        if not any(
            outer.start <= inner.start
            and inner.end <= outer.end
            and outer.end - outer.start > inner.end - inner.start
            for outer in candidates
        )
    ]


def scan(text: str, rules: Sequence[DlpRule], *, skip_quoted: bool = True) -> list[Finding]:
    """Every finding the rules act on: one per candidate and rule. Only the detectors some
    rule asks for run. A customer's message is read whole (`skip_quoted=False`): what it
    quotes is stored with it."""
    wanted = {kind for rule in rules for kind in rule.kinds}
    if not wanted:
        return []
    visible = _unquoted(text) if skip_quoted else text
    candidates = [
        candidate
        for kind, detector in DETECTORS.items()
        if kind in wanted
        for candidate in detector.detect(visible)
    ]
    return [
        Finding(candidate, rule)
        for candidate in sorted(_outermost(candidates), key=lambda c: (c.start, c.kind))
        for rule in rules
        if candidate.kind in rule.kinds and candidate.confidence >= rule.min_confidence
    ]


def masked_copy(text: str, candidates: Sequence[Candidate]) -> str:
    """The text with each candidate's span replaced by its masked form. Right to left, so
    earlier offsets stay valid; of two overlapping spans the later-starting one is kept."""
    covered = len(text) + 1
    for candidate in sorted(candidates, key=lambda c: (c.start, c.end), reverse=True):
        if candidate.end <= covered:
            text = text[: candidate.start] + candidate.masked + text[candidate.end :]
            covered = candidate.start
    return text


@dataclass(frozen=True)
class Verdict:
    target: Target
    findings: tuple[Finding, ...]
    justification: str
    code: RefusalCode | None

    @property
    def refused(self) -> bool:
        return self.code is not None

    def outcome(self, finding: Finding) -> str:
        """What happened to the text, as recorded with this finding."""
        if self.code == "dlp_blocked":
            return Outcome.BLOCKED
        if self.code == "dlp_justification_required":
            return Outcome.HELD
        if finding.rule.action == Action.FLAG:
            return Outcome.FLAGGED
        if not finding.enforced:
            return Outcome.MONITORED
        return Outcome.JUSTIFIED

    def refusing(self) -> list[Finding]:
        action = Action.BLOCK if self.code == "dlp_blocked" else Action.JUSTIFY
        return [f for f in self.findings if f.enforced and f.rule.action == action]

    def explanation(self) -> str:
        what = "; ".join(
            f"{f.candidate.kind.label.lower()} {f.candidate.masked} (rule “{f.rule.name}”)"
            for f in self.refusing()
        )
        if self.code == "dlp_blocked":
            return f"Not sent: this {self.target} contains {what}. Remove it and send again."
        return f"Not sent yet: this {self.target} contains {what}. Give a justification to send it anyway."


def judge(target: Target, findings: Sequence[Finding], justification: str) -> Verdict:
    """Blocked if an enforced block rule matched; held if an enforced justify rule matched and
    no justification was given; otherwise let through (monitor-mode rules never hold)."""
    found = tuple(findings)
    enforced = {f.rule.action for f in found if f.enforced}
    code: RefusalCode | None = None
    if Action.BLOCK in enforced:
        code = "dlp_blocked"
    elif Action.JUSTIFY in enforced and not justification:
        code = "dlp_justification_required"
    return Verdict(target, found, justification, code)
