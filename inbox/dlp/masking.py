"""PII masking for those whose role lacks "view PII" (`inbox.view_pii`): contact names and
handles, and the parts of message texts the DLP detectors recognise as personal data
(card numbers, IBANs, national ids, phone numbers, email addresses). Pure: text in, text
out; who sees what is the policy's answer (`policy.pii_visible`)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from inbox.dlp.detectors import DETECTORS, EMAIL, MASK, Candidate, mask_keep
from inbox.dlp.scanner import masked_copy
from inbox.models import DlpConfidence, DlpKind

PII_KINDS = (DlpKind.CARD, DlpKind.IBAN, DlpKind.NATIONAL_ID, DlpKind.PHONE)
DIGITS = re.compile(r"\d")


def _email_candidates(text: str) -> list[Candidate]:
    # Every address, not only free-mail ones: a customer's work address is theirs too.
    return [
        Candidate(
            DlpKind.PERSONAL_EMAIL,
            match.start(),
            match.end(),
            f"{mask_keep(match.group().split('@', 1)[0], 1, 0)}@{match.group(1)}",
            DlpConfidence.HIGH,
        )
        for match in EMAIL.finditer(text)
    ]


# Lists and threads show the same texts again on every refresh and live update, and masking
# is a pure function of the text and the DLP settings: the masked copies of short texts are
# remembered per process (bounded: MASKED_REMEMBERED texts of at most MASKED_REMEMBERED_LENGTH
# characters) and forgotten when a DLP setting changes.
MASKED_REMEMBERED = 4096
MASKED_REMEMBERED_LENGTH = 2000


def mask_text(text: str) -> str:
    """The text with its personal data masked, quoted lines included."""
    # Every kind masked here is written with digits, or is an address with an "@".
    if not text or ("@" not in text and not DIGITS.search(text)):
        return text
    return _masked_remembered(text) if len(text) <= MASKED_REMEMBERED_LENGTH else _masked(text)


def _masked(text: str) -> str:
    candidates = [candidate for kind in PII_KINDS for candidate in DETECTORS[kind].detect(text)]
    return masked_copy(text, candidates + _email_candidates(text))


_masked_remembered = lru_cache(maxsize=MASKED_REMEMBERED)(_masked)


@receiver(setting_changed)
def _forget_masked(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("DLP_"):
        _masked_remembered.cache_clear()


def mask_handle(handle: str) -> str:
    """An address keeps its first letter and domain, a number its last two digits, any
    other handle its first two characters."""
    if "@" in handle:
        local, domain = handle.rsplit("@", 1)
        return f"{mask_keep(local, 1, 0)}@{domain}"
    if len(DIGITS.findall(handle)) >= 6:
        return mask_keep(handle, 1 if handle.startswith("+") else 0, 2)
    return mask_keep(handle, 2, 0)


def mask_name(name: str) -> str:
    """Initials only: "Jane Doe" is "J••• D•••"."""
    return " ".join(f"{word[0]}{MASK * 3}" for word in name.split())
