"""slmkit's redactor vs presidio-analyzer's pattern recognizers, on the labelled set that
tests/redact_set.py builds (seeded): precision and recall per kind, and texts/s.

    python benchmarks/redact_compare.py [--n 500]

Needs `phonenumbers` and `presidio-analyzer` importable. slmkit's redactor module is loaded
from src/ by path, so a separate virtual environment holding only those two works (presidio
pulls spaCy, which slmkit does not need); presidio's recognizers run without an NLP engine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIND = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip",
}


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def presidio_predict():  # type: ignore[no-untyped-def]
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    recognizers = [
        EmailRecognizer(),
        PhoneRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
    ]

    def predict(text: str) -> list[tuple[str, int, int]]:
        found = []
        for r in recognizers:
            for res in r.analyze(text, r.supported_entities, None):
                if res.score > 0 and res.entity_type in KIND:
                    found.append((KIND[res.entity_type], res.start, res.end))
        return found

    return predict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    redact_set = _load("redact_set", ROOT / "tests" / "redact_set.py")
    redact = _load("slmkit_redact", ROOT / "src" / "slmkit" / "tasks" / "redact.py")
    items = redact_set.build(args.n)
    ours = lambda t: [(s.kind, s.start, s.end) for s in redact.find(t)]  # noqa: E731
    rows = {}
    for name, predict in (("slmkit", ours), ("presidio", presidio_predict())):
        t0 = time.perf_counter()
        res = redact_set.score(items, predict)
        rows[name] = {"texts_per_s": round(len(items) / (time.perf_counter() - t0), 1), **res}
    print(json.dumps(rows, indent=1))
    kinds = sorted(set(rows["slmkit"]) - {"texts_per_s"})
    print(
        "\n| kind | n | slmkit P | slmkit R | presidio P | presidio R |\n|---|---|---|---|---|---|"
    )
    for k in kinds:
        a, b = rows["slmkit"][k], rows["presidio"].get(k, {"precision": 0, "recall": 0})
        print(
            f"| {k} | {a['n']} | {a['precision']} | {a['recall']} | {b['precision']} | "
            f"{b['recall']} |"
        )
    print(
        f"| texts/s | | {rows['slmkit']['texts_per_s']} | | {rows['presidio']['texts_per_s']} | |"
    )


if __name__ == "__main__":
    main()
