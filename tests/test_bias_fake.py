"""Counterfactual bias probes: flip rates and probability moves by hand on classifiers whose
bias is known, articles fixed, and the CLI on a fake model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from slmkit.catalog.store import Store
from slmkit.evaluate.bias import ATTRIBUTES, TEMPLATES, fill, probe
from slmkit.tasks.classify import Prediction


def biased(word: str, p_word: float) -> object:
    def predict(texts: list[str]) -> list[Prediction]:
        out = []
        for t in texts:
            p = p_word if word in t else 0.2
            out.append(
                Prediction(
                    "positive" if p >= 0.5 else "negative", {"negative": 1 - p, "positive": p}
                )
            )
        return out

    return predict


def test_flip_rate_and_change_by_hand() -> None:
    res = probe(biased("Greg", 0.9), "positive", ["name", "religion"])  # type: ignore[arg-type]
    n = len(ATTRIBUTES["name"])
    pairs = n * (n - 1) // 2
    assert res["name"]["flip_rate"] == pytest.approx(round((n - 1) / pairs, 4))
    assert res["name"]["mean_abs_change"] == pytest.approx(round(0.7 * (n - 1) / pairs, 4))
    assert res["name"]["pairs"] == pairs * len(TEMPLATES["name"])
    assert res["name"]["mean_p_positive"]["Greg"] == 0.9
    assert res["name"]["mean_p_positive"]["Emily"] == 0.2
    lo, hi = res["name"]["flip_rate_ci95"]
    assert lo == hi == res["name"]["flip_rate"]  # the same on every template
    assert res["religion"]["flip_rate"] == 0 and res["religion"]["mean_abs_change"] == 0


def test_articles_follow_the_word() -> None:
    assert fill("An {X} family is here.", "German") == "A German family is here."
    assert fill("a {X} from work", "Indian") == "an Indian from work"
    assert fill("{X} wrote it.", "Olga") == "Olga wrote it."


def test_cli_on_a_fake_model(fake_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from slmkit.cli import cli

    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    r = CliRunner().invoke(cli, ["eval", "bias", "--model", "fake-chat", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert set(res["attributes"]) == set(ATTRIBUTES)
    for v in res["attributes"].values():
        assert 0 <= v["flip_rate"] <= 1 and v["flip_rate_ci95"][0] <= v["flip_rate_ci95"][1]


def test_generator_probes_score_what_the_model_wrote() -> None:
    """A 'model' that writes kindly about Greg and coldly about everyone else: the scorer
    sees the sentences, so only pairs with Greg flip."""
    from slmkit.evaluate.bias import GEN_TEMPLATES, probe_generator

    def complete(openings: list[str]) -> list[str]:
        return [" a wonderful person" if "Greg" in o else " a dull person" for o in openings]

    def predict(texts: list[str]) -> list[Prediction]:
        return [
            Prediction("positive", {"positive": 0.9, "negative": 0.1})
            if "wonderful" in t
            else Prediction("negative", {"positive": 0.2, "negative": 0.8})
            for t in texts
        ]

    res = probe_generator(complete, predict, "positive", ["name", "gender"])  # type: ignore[arg-type]
    n = len(ATTRIBUTES["name"])
    assert res["name"]["flip_rate"] == pytest.approx(round((n - 1) / (n * (n - 1) // 2), 4))
    assert res["name"]["templates"] == len(GEN_TEMPLATES["name"])
    assert res["name"]["examples"][1] == "Greg worked as a wonderful person"
    assert res["gender"]["flip_rate"] == 0


def test_generator_cli_on_a_fake_model(fake_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from slmkit.cli import cli

    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    args = ["eval", "bias", "--model", "fake-base", "--generator", "--scorer", "fake-chat"]
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["probe"] == "generator" and res["scorer"] == "fake-chat"
    examples = res["attributes"]["name"]["examples"]
    # the fake base model reverses the words of raw text: its sentences show it ran
    assert examples[0].startswith("Emily worked as as worked Emily")
    bad = CliRunner().invoke(cli, ["eval", "sst2", "--model", "fake-chat", "--generator"])
    assert bad.exit_code != 0 and "slm eval bias" in bad.output
