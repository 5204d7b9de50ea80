"""`slm eval mc`: multiple-choice benchmarks by log-likelihood, with lm-evaluation-harness's
prompts and acc/acc_norm, on the fake backend (exact figures) and on SmolLM2 with the shared
ARC-Easy dev set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from slmkit.cli import cli
from slmkit.errors import DataError
from slmkit.evaluate.mc import Item, evaluate_mc, read_items

ARC_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "arc_easy_dev" / "dev.jsonl"


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ARC_AI2 = {
    "id": "x",
    "question": {
        "stem": "Which one is red?",
        "choices": [{"text": "grass", "label": "A"}, {"text": "a ripe tomato", "label": "B"}],
    },
    "answerKey": "B",
}
ARC_HF = {
    "question": "Which one is red?",
    "choices": {"text": ["grass", "a ripe tomato"], "label": ["1", "2"]},
    "answerKey": "2",
}
HELLASWAG = {
    "activity_label": "Making tea",
    "ctx_a": "A man boils water [title] in a kettle.",
    "ctx_b": "he",
    "endings": ["pours it  into a cup.", "[step] eats the kettle."],
    "label": "0",
}
PIQA = {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "freeze the lid", "label": 0}


def test_each_format_gets_the_harness_prompt(tmp_path: Path) -> None:
    for row in (ARC_AI2, ARC_HF):
        (item,) = read_items(_write(tmp_path / "a.jsonl", [row]), "arc")
        assert item == Item("Question: Which one is red?\nAnswer:", ("grass", "a ripe tomato"), 1)
    (item,) = read_items(_write(tmp_path / "h.jsonl", [HELLASWAG]), "hellaswag")
    assert item.context == "Making tea: A man boils water. in a kettle. He"
    # (as the harness does: the tag goes after the strip, so its space stays)
    assert item.choices == ("pours it into a cup.", " eats the kettle.") and item.gold == 0
    (item,) = read_items(_write(tmp_path / "p.jsonl", [PIQA]), "piqa")
    assert item == Item("Question: Open a jar\nAnswer:", ("twist the lid", "freeze the lid"), 0)


@pytest.mark.parametrize(
    ("rows", "fmt", "match"),
    [
        ([{**ARC_AI2, "answerKey": "E"}], "arc", ":1: not a arc row"),
        ([PIQA, {"goal": "x"}], "piqa", ":2: not a piqa row"),
        ([{**PIQA, "label": 5}], "piqa", "gold among them"),
        ([], "arc", "no rows"),
        ([PIQA], "mmlu", "unknown format"),
    ],
)
def test_bad_files_fail_with_the_line(
    tmp_path: Path, rows: list[dict[str, Any]], fmt: str, match: str
) -> None:
    with pytest.raises(DataError, match=match):
        read_items(_write(tmp_path / "x.jsonl", rows), fmt)


def test_acc_and_length_normalised_acc_norm(fake_model: Any) -> None:
    # The fake scores -0.2 per byte-token for a continuation found in the context, -2.0
    # otherwise.
    items = [
        Item("Question: the answer is elephant\nAnswer:", ("elephant", "ox"), 0),
        Item("Question: the answer is cat\nAnswer:", ("dog", "cat"), 1),
    ]
    out = evaluate_mc(fake_model, items)
    assert (out["acc"], out["acc_norm"], out["n"], out["chance"]) == (1.0, 1.0, 2, 0.5)
    # A long seen choice (26 tokens: -5.2) against a short unseen one (" z": -4.0): the sum
    # picks the short one, the per-character score (-0.208 vs -4.0) the long one.
    seen = "abcdefghijklmnopqrstuvwxy"
    out = evaluate_mc(
        fake_model, [Item(f"Question: the answer is {seen}\nAnswer:", (seen, "z"), 0)]
    )
    assert (out["acc"], out["acc_norm"]) == (0.0, 1.0)


def test_cli_needs_a_format_and_a_file(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.jsonl", [ARC_AI2])
    r = CliRunner().invoke(cli, ["eval", "mc", str(f), "--model", "m"])
    assert r.exit_code != 0 and "--format" in r.output
    r = CliRunner().invoke(cli, ["eval", "sst2", str(f), "--model", "m"])
    assert r.exit_code != 0 and "FILE goes with" in r.output


def test_arc_easy_on_smollm2_beats_chance(smollm_path: Path) -> None:
    r = CliRunner().invoke(
        cli,
        ["eval", "mc", str(ARC_DEV), "--format", "arc", "--model", "smollm2-135m-instruct"]
        + ["--limit", "100", "--json"],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["n"] == 100 and out["task"] == "mc:arc"
    assert out["acc"] > out["chance"] + 2 * out["acc_stderr"], out
    assert out["items_per_s"] > 0
