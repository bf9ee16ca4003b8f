"""One detector per kind of finding, behind one Protocol, held in one registry.

A detector finds candidate spans, confirms them with a real check (a checksum from
python-stdnum, a phone-number parse, a domain list) and rates its confidence the way
Microsoft Purview does: the pattern alone is low or medium; supporting keywords near it
raise the confidence, words saying it is something else (an order or tracking number)
lower it. The masked text is built here, by the only code that has seen the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import phonenumbers
from django.conf import settings
from stdnum import iban, luhn
from stdnum.util import get_cc_module

from inbox.models import DlpConfidence, DlpKind

MASK = "•"
# How far from a match a keyword still supports it (characters, either side). Purview
# uses 300; replies are short and a sentence or two is what belongs together.
PROXIMITY = 150

MESSENGERS = (
    r"whats\s?app|telegram|signal|viber|we\s?chat|snapchat|snap|instagram|insta|facebook|fb"
    r"|messenger|threema|discord|skype|kik"
)


@dataclass(frozen=True)
class Candidate:
    kind: DlpKind
    start: int
    end: int
    masked: str
    confidence: DlpConfidence


class Detector(Protocol):
    kind: DlpKind

    def detect(self, text: str) -> Iterator[Candidate]: ...


@dataclass(frozen=True)
class Evidence:
    """Keywords near a match, and what they make of it. The patterns are lower-case and
    case-sensitive, run over the lower-cased window: IGNORECASE made each search several
    times slower, and a long reply runs one per candidate."""

    supporting: re.Pattern[str]
    contradicting: re.Pattern[str] | None = None

    def rate(
        self,
        text: str,
        start: int,
        end: int,
        *,
        alone: DlpConfidence,
        supported: DlpConfidence,
        contradicted: DlpConfidence | None,
    ) -> DlpConfidence | None:
        """The confidence of a match at start:end; None when the context rules it out."""
        window = (text[max(0, start - PROXIMITY) : start] + " " + text[end : end + PROXIMITY]).lower()
        if self.supporting.search(window):
            return supported
        if self.contradicting is not None and self.contradicting.search(window):
            return contradicted
        return alone


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b")


def mask_keep(value: str, head: int, tail: int) -> str:
    """`value` with all but its first `head` and last `tail` characters masked."""
    if len(value) <= head + tail:
        return MASK * len(value)
    return value[:head] + MASK * (len(value) - head - tail) + value[len(value) - tail :]


def _grouped(value: str, size: int = 4) -> str:
    return " ".join(value[i : i + size] for i in range(0, len(value), size))


def _windows(hits: Iterator[re.Match[str]], before: int, after: int, size: int) -> Iterator[tuple[int, int]]:
    """Merged spans reaching `before` characters ahead of each hit and `after` past it.

    The expensive patterns run only inside these: a cheap, case-sensitive search over the
    lower-cased text finds where a match could be (IGNORECASE alternations tried at every
    position of a 20 KB reply were most of the scan's cost). Python's `pattern.finditer(text,
    pos, endpos)` still sees the characters before `pos`, so `\\b` and look-behinds behave
    as on the whole text."""
    start = end = -1
    for hit in hits:
        low, high = max(0, hit.start() - before), min(size, hit.end() + after)
        if low > end:
            if end >= 0:
                yield start, end
            start = low
        end = max(end, high)
    if end >= 0:
        yield start, end


def _lowered(text: str) -> str | None:
    """The text lower-cased, if that keeps every offset (a few characters, such as "İ",
    lower-case to two); None otherwise, and the caller searches the whole text."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else None


def _allowed_contacts() -> frozenset[str]:
    return _allowed(tuple(settings.DLP_ALLOWED_CONTACTS))


@cache
def _allowed(contacts: tuple[str, ...]) -> frozenset[str]:
    """The company's own addresses and numbers (compared lower-cased, numbers as E.164)."""
    allowed = set()
    for contact in contacts:
        if "@" in contact:
            allowed.add(contact.strip().lower())
            continue
        number = phonenumbers.parse(contact, settings.DLP_PHONE_REGION)
        allowed.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return frozenset(allowed)


# --- Payment cards ----------------------------------------------------------------------------

# Not preceded by a digit or a dash, checked after the first digit rather than before it:
# a pattern that starts with a digit lets the engine skip to the next digit, where a
# leading lookbehind made it try every position (0.36 to 0.09-0.11 ms over an 11 KB mail body).
CARD_CANDIDATE = re.compile(r"\d(?<![\d-]\d)(?:[ -]?\d){12,18}(?![\d-])")
# Issuer prefixes of the card brands in use (Visa, Mastercard, Amex, Discover, Diners, JCB,
# Maestro, UnionPay): an id that passes Luhn but starts otherwise is not a card.
CARD_ISSUER = re.compile(r"4|5[0-5]|2[2-7]|3[47]|3[068]|35|6[0-9]")
CARD_EVIDENCE = Evidence(
    supporting=_words(
        r"cards?",
        "visa",
        "master\\s?card",
        "amex",
        "american express",
        "maestro",
        "cvc",
        "cvv",
        "expiry",
        "expires",
        "credit",
        "debit",
        r"(?:kredit)?karten?(?:nummer)?",
        "carte",
        "tarjeta",
        "carta",
        "ablauf",
    ),
    contradicting=_words(
        "order",
        "tracking",
        "invoice",
        "reference",
        "ref",
        "ticket",
        "parcel",
        "shipment",
        r"bestell\w*",
        r"sendung\w*",
        r"rechnung\w*",
        "commande",
        "pedido",
        "factura",
    ),
)


class CardDetector:
    kind = DlpKind.CARD

    def detect(self, text: str) -> Iterator[Candidate]:
        for match in CARD_CANDIDATE.finditer(text):
            digits = re.sub(r"[ -]", "", match.group())
            if not (13 <= len(digits) <= 19 and CARD_ISSUER.match(digits) and luhn.is_valid(digits)):
                continue
            confidence = CARD_EVIDENCE.rate(
                text,
                match.start(),
                match.end(),
                alone=DlpConfidence.MEDIUM,
                supported=DlpConfidence.HIGH,
                contradicted=DlpConfidence.LOW,
            )
            if confidence is not None:
                # First six and last four: what PCI DSS allows to be shown.
                masked = _grouped(mask_keep(digits, 6, 4))
                yield Candidate(self.kind, match.start(), match.end(), masked, confidence)


# --- IBANs ------------------------------------------------------------------------------------

# Case-sensitive, as IBANs are written: a lower-case word after one is not another group.
IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
IBAN_EVIDENCE = Evidence(
    supporting=_words("iban", "bic", "swift", "account", "bank", "konto", "compte", "cuenta", "rib")
)


class IbanDetector:
    kind = DlpKind.IBAN

    def detect(self, text: str) -> Iterator[Candidate]:
        for match in IBAN_CANDIDATE.finditer(text):
            compact = match.group().replace(" ", "")
            if not iban.is_valid(compact):
                continue
            confidence = IBAN_EVIDENCE.rate(
                text,
                match.start(),
                match.end(),
                alone=DlpConfidence.MEDIUM,
                supported=DlpConfidence.HIGH,
                contradicted=None,
            )
            if confidence is not None:
                masked = _grouped(mask_keep(compact, 4, 4))
                yield Candidate(self.kind, match.start(), match.end(), masked, confidence)


# --- National identity numbers ----------------------------------------------------------------

NATIONAL_ID_CANDIDATE = re.compile(r"\b(?:\d[\d .-]{6,20}\d|\d{8}[A-Z]|[XYZ]\d{7}[A-Z])\b", re.IGNORECASE)
NATIONAL_ID_EVIDENCE = Evidence(
    supporting=_words(
        "ssn",
        "social security",
        "national id",
        "national insurance",
        "tax id",
        "tin",
        r"steuer[- ]?(?:id|identifikationsnummer|nummer)",
        "idnr",
        "personalausweis",
        "bsn",
        "burgerservicenummer",
        "dni",
        "nie",
        "nif",
        "insee",
        r"num[ée]ro de s[ée]curit[ée] sociale",
        "passport",
    )
)


@cache
def _national_id_modules(formats: tuple[str, ...]) -> tuple[object, ...]:
    """The python-stdnum modules of the configured formats ("de.idnr", "nl.bsn", …)."""
    return tuple(get_cc_module(*name.split(".", 1)) for name in formats)


class NationalIdDetector:
    kind = DlpKind.NATIONAL_ID

    def detect(self, text: str) -> Iterator[Candidate]:
        modules = _national_id_modules(tuple(settings.DLP_NATIONAL_ID_FORMATS))
        for match in NATIONAL_ID_CANDIDATE.finditer(text):
            value = match.group()
            if not any(module.is_valid(value) for module in modules):  # type: ignore[attr-defined]  # stdnum modules share is_valid
                continue
            confidence = NATIONAL_ID_EVIDENCE.rate(
                text,
                match.start(),
                match.end(),
                alone=DlpConfidence.LOW,
                supported=DlpConfidence.HIGH,
                contradicted=None,
            )
            if confidence is not None:
                compact = re.sub(r"[ .-]", "", value)
                yield Candidate(self.kind, match.start(), match.end(), mask_keep(compact, 0, 2), confidence)


# --- Phone numbers ----------------------------------------------------------------------------

PHONE_EVIDENCE = Evidence(
    supporting=_words(
        "call me",
        "text me",
        "my number",
        "my phone",
        "mobile",
        "cell",
        "private",
        "personal",
        "sms",
        MESSENGERS,
        "handy",
        "privat",
        "meine nummer",
        r"ruf(?:en sie)? mich",
        "portable",
        r"appelle[zr]?[- ]moi",
        r"ll[áa]mame",
        r"m[óo]vil",
    ),
    contradicting=_words(
        "order",
        "tracking",
        "invoice",
        "reference",
        "ticket",
        "case",
        "parcel",
        r"bestell\w*",
        r"sendung\w*",
        r"rechnung\w*",
        "vorgang",
        "aktenzeichen",
        "commande",
        "dossier",
        "pedido",
        "caso",
    ),
)


# Where a phone number could be: a run of digits with the separators numbers are written with.
PHONE_RUN = re.compile(r"\d[\d \t().\-/]{4,}\d")
# phonenumbers may take a "+" or "(" just outside the run into its match.
PHONE_RUN_MARGIN = 3


class PhoneDetector:
    kind = DlpKind.PHONE

    def _ruled_out(self, text: str, start: int, end: int) -> bool:
        """Whether the context rules out every number the matcher could find in start:end,
        decided before paying for its parse. Exact, not a guess: each inner match's keyword
        window lies inside start-PROXIMITY:end+PROXIMITY (no supporting word there means
        none near any of them) and holds end-PROXIMITY:start and end:start+PROXIMITY (a
        contradicting word there is near every one of them)."""
        if PHONE_EVIDENCE.supporting.search(text[max(0, start - PROXIMITY) : end + PROXIMITY].lower()):
            return False
        core = (text[max(0, end - PROXIMITY) : start] + " " + text[end : start + PROXIMITY]).lower()
        return PHONE_EVIDENCE.contradicting is not None and bool(PHONE_EVIDENCE.contradicting.search(core))

    def detect(self, text: str) -> Iterator[Candidate]:
        allowed = _allowed_contacts()
        for low, high in _windows(PHONE_RUN.finditer(text), PHONE_RUN_MARGIN, PHONE_RUN_MARGIN, len(text)):
            if self._ruled_out(text, low, high):
                continue
            matcher = phonenumbers.PhoneNumberMatcher(
                text[low:high], settings.DLP_PHONE_REGION, leniency=phonenumbers.Leniency.VALID
            )
            for match in matcher:
                start, end = low + match.start, low + match.end
                e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
                if e164 in allowed:
                    continue
                confidence = PHONE_EVIDENCE.rate(
                    text, start, end, alone=DlpConfidence.LOW, supported=DlpConfidence.HIGH, contradicted=None
                )
                if confidence is not None:
                    country = f"+{match.number.country_code}"
                    masked = f"{country} {mask_keep(e164[len(country) :], 0, 2)}"
                    yield Candidate(self.kind, start, end, masked, confidence)


# --- Personal email addresses -----------------------------------------------------------------

EMAIL = re.compile(r"\b[A-Z0-9._%+-]+@((?:[A-Z0-9-]+\.)+[A-Z]{2,})\b", re.IGNORECASE)
EMAIL_EVIDENCE = Evidence(
    supporting=_words(
        "private",
        "personal",
        "my email",
        "my mail",
        "email me",
        "mail me",
        "write to me",
        "privat\\w*",
        "schreib\\w* mir",
        "[ée]cris[- ]moi",
        "escr[íi]beme",
        "directly",
        "direkt",
    )
)


class PersonalEmailDetector:
    kind = DlpKind.PERSONAL_EMAIL

    def detect(self, text: str) -> Iterator[Candidate]:
        allowed = _allowed_contacts()
        free_mail = frozenset(settings.DLP_FREE_MAIL_DOMAINS)
        for match in EMAIL.finditer(text):
            address = match.group().lower()
            if match.group(1).lower() not in free_mail or address in allowed:
                continue
            confidence = EMAIL_EVIDENCE.rate(
                text,
                match.start(),
                match.end(),
                alone=DlpConfidence.MEDIUM,
                supported=DlpConfidence.HIGH,
                contradicted=None,
            )
            if confidence is not None:
                local, domain = address.split("@", 1)
                yield Candidate(
                    self.kind, match.start(), match.end(), f"{mask_keep(local, 1, 0)}@{domain}", confidence
                )


# --- Shadow channels: messenger links and invitations -----------------------------------------

MESSENGER_LINK = re.compile(
    r"\b(?:https?://)?(?:www\.)?"
    r"(wa\.me|api\.whatsapp\.com/send|chat\.whatsapp\.com|t\.me|telegram\.(?:me|dog)|m\.me|ig\.me"
    r"|signal\.me|signal\.group|line\.me|viber\.me)"
    r"/([^\s<>\"')]+)",
    re.IGNORECASE,
)


# Every messenger link has one of these right before its path (matched lower-cased).
MESSENGER_LINK_HINT = re.compile(r"(?:\.me|\.dog|\.group|whatsapp\.com(?:/send)?)/")
# "https://www.api." ahead of the hint at most; the path runs to the next space.
MESSENGER_LINK_LEAD = 30
WHITESPACE = re.compile(r"\s")


class MessengerLinkDetector:
    kind = DlpKind.MESSENGER_LINK

    def detect(self, text: str) -> Iterator[Candidate]:
        lowered = _lowered(text)
        if lowered is None:
            yield from self._links(text, 0, len(text))
            return
        covered = 0
        for hint in MESSENGER_LINK_HINT.finditer(lowered):
            if hint.start() < covered:
                continue  # a second hint inside a link already read ("t.me/x.me/")
            space = WHITESPACE.search(text, hint.end())
            high = space.start() if space else len(text)
            yield from self._links(text, max(covered, hint.start() - MESSENGER_LINK_LEAD), high)
            covered = high

    def _links(self, text: str, low: int, high: int) -> Iterator[Candidate]:
        for match in MESSENGER_LINK.finditer(text, low, high):
            # A link is an invitation by itself: no keyword needed to be sure of it.
            masked = f"{match.group(1).lower()}/{mask_keep(match.group(2), 2, 2)}"
            yield Candidate(self.kind, match.start(), match.end(), masked[:200], DlpConfidence.HIGH)


_ON = r"\s+(?:up\s+)?(?:on|via|at|through|over|in)\s+(?:my\s+)?(?:private\s+|personal\s+)?"
MESSENGER_INVITE = re.compile(
    "|".join(
        (
            # English: "add me on WhatsApp", "text me on Telegram", "my Signal is …"
            rf"\b(?:add|text|message|msg|ping|dm|reach|contact|find|follow|write\s+to|hit)\s+me{_ON}(?:{MESSENGERS})\b",
            # ("my Signal is" must go on with a handle or number: "my signal is weak" is not one.)
            rf"\bmy\s+(?:private\s+|personal\s+)?(?:{MESSENGERS})(?:\s+(?:number|handle|id|username|account))?"
            r"\s+is:?\s+(?:@|\+?\d)",
            # German: "schreib mir auf WhatsApp", "adde mich bei Telegram", "meine WhatsApp-Nummer"
            rf"\b(?:schreib\w*|kontaktier\w*|add\w*|füg\w*|meld\w*)\s+(?:sie\s+)?(?:mir|mich|sich)\s+(?:(?:gerne|einfach|doch|bitte|kurz)\s+)*"
            rf"(?:auf|über|per|bei|via|in)\s+(?:(?:meinem|meiner|mein)\s+)?(?:privat\w*\s+)?(?:{MESSENGERS})\b",
            rf"\bmeine?\s+(?:private\s+)?(?:{MESSENGERS})[- ]?(?:nummer|id|name)\b",
            # French: "ajoute-moi sur WhatsApp", "écris-moi sur Telegram"
            rf"\b(?:ajoute|[ée]cris|contacte|envoie)[sz]?[- ]moi\s+(?:un\s+message\s+)?(?:sur|via|par)\s+"
            rf"(?:{MESSENGERS})\b",
            # Spanish: "agrégame en WhatsApp", "escríbeme por Telegram"
            rf"\b(?:agr[ée]game|escr[íi]beme|cont[áa]ctame|m[áa]ndame)\s+(?:un\s+mensaje\s+)?(?:en|por|a|al)\s+"
            rf"(?:{MESSENGERS})\b",
            # A handle with its messenger: "@jane_doe on Telegram", "Telegram: @jane_doe"
            rf"(?<![\w@.])@[A-Za-z0-9_.]{{3,32}}\s+(?:on|auf|sur|en|via)\s+(?:{MESSENGERS})\b",
            rf"\b(?:{MESSENGERS})\s*(?::|-|is|ist|est)?\s*@[A-Za-z0-9_.]{{3,32}}\b",
        )
    ),
    re.IGNORECASE,
)
INVITE_EVIDENCE = Evidence(
    supporting=re.compile(
        r"\b(?:private\w*|personal|privat\w*|perso|directly|direkt|outside|au[ßs]erhalb)\b"
        r"|@\w{3,}|\+?\d[\d ]{6,}"
    )
)


# Every invitation names its messenger; the lookahead lets the engine skip to a plausible
# first letter instead of trying the alternation at every position.
MESSENGER_NAME = re.compile(r"\b(?=[wtsvfimdk])(?:" + MESSENGERS + ")")
# How far an invitation reaches from its messenger's name: its longest lead-in ("schreiben
# Sie mir gerne über meine private …") before, a 32-character handle after.
INVITE_BEFORE, INVITE_AFTER = 120, 60


class MessengerInviteDetector:
    kind = DlpKind.MESSENGER_INVITE

    def detect(self, text: str) -> Iterator[Candidate]:
        lowered = _lowered(text)
        if lowered is None:
            yield from self._invitations(text, 0, len(text))
            return
        names = MESSENGER_NAME.finditer(lowered)
        for low, high in _windows(names, INVITE_BEFORE, INVITE_AFTER, len(text)):
            yield from self._invitations(text, low, high)

    def _invitations(self, text: str, low: int, high: int) -> Iterator[Candidate]:
        for match in MESSENGER_INVITE.finditer(text, low, high):
            confidence = INVITE_EVIDENCE.rate(
                text,
                match.start(),
                match.end(),
                alone=DlpConfidence.MEDIUM,
                supported=DlpConfidence.HIGH,
                contradicted=None,
            )
            if confidence is not None:
                # The phrase says nothing secret; a handle in it is cut to its first letters.
                masked = re.sub(r"@([A-Za-z0-9_.]{2})[A-Za-z0-9_.]+", rf"@\1{MASK * 3}", match.group())
                yield Candidate(self.kind, match.start(), match.end(), masked[:200], confidence)


DETECTORS: dict[DlpKind, Detector] = {
    detector.kind: detector
    for detector in (
        CardDetector(),
        IbanDetector(),
        NationalIdDetector(),
        PhoneDetector(),
        PersonalEmailDetector(),
        MessengerLinkDetector(),
        MessengerInviteDetector(),
    )
}
