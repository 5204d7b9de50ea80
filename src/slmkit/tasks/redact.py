"""Find and redact personal data: emails, phone numbers, payment card numbers (Luhn
check), IBANs (ISO 13616 mod-97 check), IP addresses, and person names when a language
model is given to find them.

Phone numbers are found and validated by `phonenumbers` (Google's libphonenumber rules,
per region); the other kinds are patterns written here, each candidate then validated
(checksum, address parser), because a pattern alone mistakes order numbers for cards.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("email", "phone", "card", "iban", "ip", "person")
DEFAULT_KINDS = ("email", "phone", "card", "iban", "ip")  # person needs a model
# Higher first: where two finds overlap, the higher kind keeps the text.
PRIORITY = {"email": 6, "iban": 5, "card": 4, "ip": 3, "phone": 2, "person": 1}

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


@dataclass(frozen=True)
class Span:
    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Redaction:
    """The redacted text and what was replaced (kind, offsets into the original, the text)."""

    text: str
    spans: tuple[Span, ...]  # offsets into the original text


# IBAN length per country (ISO 13616 registry); other countries: any length 15-34.
IBAN_LENGTHS = dict(
    (c[:2], int(c[2:]))
    for c in (
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 "
        "EE20 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IS26 IT27 "
        "JO30 KW30 KZ20 LB28 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 MT31 MU30 NL18 NO15 "
        "PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SE24 SI19 SK24 SM27 TN24 TR26 UA29 VG24 XK20"
    ).split()
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616: the first four characters moved to the end, letters as 10..35, mod 97 == 1."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    if len(s) != IBAN_LENGTHS.get(s[:2], len(s)):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _emails(text: str) -> Iterable[Span]:
    for m in _EMAIL.finditer(text):
        yield Span("email", m.start(), m.end())


def _cards(text: str) -> Iterable[Span]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            yield Span("card", m.start(), m.end())


def _ibans(text: str) -> Iterable[Span]:
    for m in _IBAN.finditer(text):
        raw = m.group()
        # a match may run on into the next word's digits: try shorter ends too
        for end in range(len(raw), 14, -1):
            if raw[end - 1] != " " and iban_ok(raw[:end]):
                yield Span("iban", m.start(), m.start() + end)
                break


def _ips(text: str) -> Iterable[Span]:
    for pattern in (_IPV4, _IPV6):
        for m in pattern.finditer(text):
            try:
                ipaddress.ip_address(m.group())
            except ValueError:
                continue
            yield Span("ip", m.start(), m.end())


def _phones(text: str, region: str) -> Iterable[Span]:
    import phonenumbers

    for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
        yield Span("phone", m.start, m.end)


def _names(text: str, model: Any) -> Iterable[Span]:
    """Names a chat model lists (constrained JSON), found again in the text verbatim."""
    from slmkit.tasks.extract import Extractor

    schema = {
        "type": "object",
        "properties": {"names": {"type": "array", "items": {"type": "string"}, "maxItems": 20}},
        "required": ["names"],
    }
    from slmkit.errors import ExtractionError, InputError

    ask = "List the full names of people mentioned in this text (none: an empty list).\n\n"
    try:
        found = Extractor(model, schema)(ask + text).data["names"]
    except ExtractionError as e:  # never return the text unredacted as if no names were in it
        raise InputError(
            f"{model.id} could not list the names in this text ({e}); redaction refused: "
            "use a stronger chat model"
        ) from e
    for name in {n.strip() for n in found if len(n.strip()) > 1}:
        for m in re.finditer(re.escape(name), text):
            yield Span("person", m.start(), m.end())


def find(
    text: str, kinds: Sequence[str] = DEFAULT_KINDS, *, region: str = "US", model: Any = None
) -> list[Span]:
    """Non-overlapping spans of personal data, in text order."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        from slmkit.errors import InputError

        raise InputError(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    finders = {
        "email": lambda: _emails(text),
        "card": lambda: _cards(text),
        "iban": lambda: _ibans(text),
        "ip": lambda: _ips(text),
        "phone": lambda: _phones(text, region),
        "person": lambda: _names(text, model) if model is not None else (),
    }
    spans = [s for k in kinds for s in finders[k]()]
    spans.sort(key=lambda s: (-PRIORITY[s.kind], -(s.end - s.start)))
    kept: list[Span] = []
    for s in spans:
        if all(s.end <= k.start or s.start >= k.end for k in kept):
            kept.append(s)
    return sorted(kept, key=lambda s: s.start)


def redact(
    text: str, kinds: Sequence[str] = DEFAULT_KINDS, *, region: str = "US", model: Any = None
) -> Redaction:
    """The text with each span replaced by [KIND]."""
    spans = find(text, kinds, region=region, model=model)
    out, pos = [], 0
    for s in spans:
        out += [text[pos : s.start], f"[{s.kind.upper()}]"]
        pos = s.end
    out.append(text[pos:])
    return Redaction("".join(out), tuple(spans))
