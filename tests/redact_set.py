"""A labelled set for redaction, built here (seeded): sentences carrying emails, phone
numbers (US and international, valid per libphonenumber), payment card numbers (Luhn-valid,
several formats), IBANs (mod-97 valid, four countries) and IP addresses, mixed with decoys
that look alike and are not personal data (order numbers failing Luhn, IBANs with a wrong
check, versions, dates, prices, out-of-range addresses). Each item: text and gold spans."""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST = ["maria", "john", "li", "fatima", "olga", "kwame", "sofia", "raj", "ana", "tom"]
LAST = ["lopez", "smith", "wang", "haddad", "ivanova", "mensah", "rossi", "patel", "silva"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "uni.example.edu"]
US_AREAS = ["212", "415", "646", "312", "617", "305", "206", "512", "303", "404"]
REGIONS = ["GB", "DE", "FR", "IN", "BR", "AU"]


@dataclass(frozen=True)
class Item:
    text: str
    gold: tuple[tuple[str, int, int], ...]  # (kind, start, end)


def _luhn_complete(body: str) -> str:
    for d in "0123456789":
        digits = body + d
        total = sum(
            (int(c) * 2 - 9 if int(c) * 2 > 9 else int(c) * 2) if i % 2 else int(c)
            for i, c in enumerate(reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def card(rng: random.Random, valid: bool = True) -> str:
    prefix, n = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(n - len(prefix) - 1))
    num = _luhn_complete(body)
    if not valid:
        num = num[:-1] + str((int(num[-1]) + 1) % 10)
    sep = rng.choice(["", " ", "-"])
    return sep.join(num[i : i + 4] for i in range(0, len(num), 4)) if sep else num


def iban(rng: random.Random, valid: bool = True) -> str:
    country, body = rng.choice(
        [
            ("DE", "".join(rng.choice("0123456789") for _ in range(18))),
            ("GB", "NWBK" + "".join(rng.choice("0123456789") for _ in range(14))),
            ("FR", "".join(rng.choice("0123456789") for _ in range(23))),
            ("NL", "ABNA" + "".join(rng.choice("0123456789") for _ in range(10))),
        ]
    )
    moved = body + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    if not valid:
        check = check % 97 + 1 if check != 97 else 2
    s = f"{country}{check:02d}{body}"
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4)) if rng.random() < 0.5 else s


def phone(rng: random.Random) -> str:
    import phonenumbers

    while True:
        if rng.random() < 0.6:
            num = f"{rng.choice(US_AREAS)}{rng.randint(2, 9)}{rng.randint(0, 99):02d}" + (
                f"{rng.randint(0, 9999):04d}"
            )
            fmt = rng.choice(["({}) {}-{}", "{}-{}-{}", "{}.{}.{}", "+1 {} {} {}"])
            text = fmt.format(num[:3], num[3:6], num[6:])
            parsed = phonenumbers.parse(text, "US")
        else:
            ex = phonenumbers.example_number(rng.choice(REGIONS))
            assert ex is not None
            ex.national_number = int(str(ex.national_number)[:-2] + f"{rng.randint(0, 99):02d}")
            parsed = ex
            text = phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        if phonenumbers.is_valid_number(parsed):
            return text


def ip(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8))


def email(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"


POSITIVE = {
    "email": ("Please write to {} before Friday.", email),
    "phone": ("You can call me on {} after 6pm.", phone),
    "card": ("Charge the order to card {} today.", card),
    "iban": ("Send the refund to IBAN {} as agreed.", iban),
    "ip": ("The login came from {} at midnight.", ip),
}
DECOYS = [
    lambda r: f"Order number {card(r, valid=False)} has shipped.",
    lambda r: f"The account {iban(r, valid=False)} was closed.",
    lambda r: f"Upgrade to version {r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 99)} now.",
    lambda r: f"The meeting is on 2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} at 10:30.",
    lambda r: f"It costs ${r.randint(1, 9)},{r.randint(100, 999)}.{r.randint(10, 99)} in total.",
    lambda r: f"Address {r.randint(256, 999)}.{r.randint(0, 255)}.1.1 is not valid.",
    lambda r: f"Ticket #{r.randint(100000, 999999)} was opened by the support team.",
    lambda r: f"Room {r.randint(100, 999)}, floor {r.randint(1, 30)}, building B.",
]


def build(n: int = 500, seed: int = 0) -> list[Item]:
    """n items: about two thirds with one or two pieces of personal data, a third decoys."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        if i % 3 == 2:
            items.append(Item(rng.choice(DECOYS)(rng), ()))
            continue
        parts, gold, text = rng.sample(list(POSITIVE), rng.choice([1, 2])), [], ""
        for kind in parts:
            template, make = POSITIVE[kind]
            value = make(rng)
            head, tail = template.split("{}")
            if text:
                text += " "
            start = len(text) + len(head)
            text += head + value + tail
            gold.append((kind, start, start + len(value)))
        items.append(Item(text, tuple(gold)))
    return items


def score(items: list[Item], predict: object) -> dict[str, dict[str, float]]:
    """Per-kind precision and recall; a find counts when its kind matches and it overlaps a
    gold span of that kind."""
    from collections import Counter

    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for item in items:
        found = predict(item.text)  # type: ignore[operator]
        for kind, start, end in found:
            hit = any(k == kind and start < e and s < end for k, s, e in item.gold)
            (tp if hit else fp)[kind] += 1
        for kind, s, e in item.gold:
            if not any(k == kind and st < e and s < en for k, st, en in found):
                fn[kind] += 1
    out = {}
    for kind in sorted(set(tp) | set(fp) | set(fn)):
        p = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else 0.0
        r = tp[kind] / (tp[kind] + fn[kind]) if tp[kind] + fn[kind] else 0.0
        out[kind] = {"precision": round(p, 4), "recall": round(r, 4), "n": tp[kind] + fn[kind]}
    return out
