"""Tasks on real models and real data (../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

import slmkit
from slmkit.catalog.store import Store
from slmkit.errors import EmptyPromptError
from slmkit.evaluate import SMS_SCHEMA
from slmkit.tasks.classify import (
    FewShotClassifier,
    HeadClassifier,
    LabelError,
    LikelihoodClassifier,
)
from slmkit.tasks.data import ClassificationTask, DataError, builtin_task, read_rows
from slmkit.tasks.embed import load_embedder
from slmkit.tasks.extract import Extractor, SchemaError
from slmkit.tasks.summarize import Summarizer, split_text


def task(name: str) -> ClassificationTask:
    spec = builtin_task(name)
    assert isinstance(spec, ClassificationTask)
    return spec


@pytest.fixture(scope="module")
def int8(real_store: Store):  # type: ignore[no-untyped-def]
    return load_embedder("minilm-int8", store=real_store, pull=True)


def test_int8_and_fp32_embeddings_agree(int8, real_store: Store) -> None:  # type: ignore[no-untyped-def]
    texts, _ = task("sst2").load("test", 64)
    fp32 = load_embedder("minilm-fp32", store=real_store, pull=True)
    a, b = int8.embed(texts), fp32.embed(texts)
    assert a.shape == b.shape == (64, 384)
    cos = (a * b).sum(axis=1)
    assert cos.min() >= 0.99, cos.min()
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    one_by_one = np.stack([int8.embed([t])[0] for t in texts[:8]])
    np.testing.assert_allclose(one_by_one, a[:8], atol=1e-4)  # batching/padding changes nothing


def test_head_on_sms_spam_saves_and_reloads(int8, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = task("sms_spam")
    tx, ty = spec.load("train", 1500)
    ex, ey = spec.load("test", 400)
    head = HeadClassifier.fit(int8, tx, ty)
    preds = head.predict(ex)
    acc = sum(p.label == g for p, g in zip(preds, ey, strict=True)) / len(ey)
    assert acc >= 0.95, acc
    path = head.save(tmp_path / "spam.head.json")
    again = HeadClassifier.load(path, lambda name: int8)
    for p, q in zip(preds[:20], again.predict(ex[:20]), strict=True):
        assert p.label == q.label
        assert p.probs == pytest.approx(q.probs, abs=1e-6)


def test_head_probabilities_match_sklearn(int8) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    spec = task("banking77")
    tx, ty = spec.load("train", 600)
    head = HeadClassifier.fit(int8, tx, ty)
    x = int8.embed(tx[:30])
    ref = LogisticRegression(C=4.0, max_iter=2000).fit(int8.embed(tx), ty)
    np.testing.assert_allclose(head.predict_proba(x), ref.predict_proba(x), atol=1e-6)


def test_zero_shot_beats_majority_and_batching_agrees(smollm: slmkit.Model) -> None:
    spec = task("sst2")
    texts, gold = spec.load("test", 160)
    batched = LikelihoodClassifier(smollm, spec.labels, instruction=spec.instruction)
    preds = batched.predict(texts)
    acc = sum(p.label == g for p, g in zip(preds, gold, strict=True)) / len(gold)
    majority = max(gold.count(lb) for lb in spec.labels) / len(gold)
    assert acc > majority + 0.05, (acc, majority)
    for p in preds:
        assert sum(p.probs.values()) == pytest.approx(1.0)
    single = LikelihoodClassifier(smollm, spec.labels, instruction=spec.instruction, batched=False)
    # llama.cpp's batched and single-token kernels round differently: near-ties may flip,
    # confident decisions may not.
    diffs = []
    for a, b in zip(preds[:40], single.predict(texts[:40]), strict=True):
        diffs.append(abs(a.probs["positive"] - b.probs["positive"]))
        if abs(b.probs["positive"] - 0.5) > 0.1:
            assert a.label == b.label
    assert float(np.mean(diffs)) < 0.05


def test_batched_loglikelihood_matches_single(smollm: slmkit.Model) -> None:
    pairs = [
        ("The capital of France is", " Paris"),
        ("The capital of France is", " London"),
        ("One, two, three,", " four, five, six"),
        ("Water boils at 100 degrees", " Celsius at sea level."),
    ]
    many = smollm.loglikelihood_many(pairs)
    for (c, x), b in zip(pairs, many, strict=True):
        a = smollm.loglikelihood(c, x)
        assert a.n_tokens == b.n_tokens
        assert b.logprob == pytest.approx(a.logprob, abs=0.15 * a.n_tokens)
    assert many[0].logprob > many[1].logprob


def test_few_shot_puts_the_nearest_example_last(smollm: slmkit.Model, int8) -> None:  # type: ignore[no-untyped-def]
    spec = task("sms_spam")
    tx, ty = spec.load("train", 200)
    base = LikelihoodClassifier(smollm, spec.labels, instruction=spec.instruction)
    few = FewShotClassifier(base, tx, ty, int8, k=3)
    sims = int8.embed([tx[5]]) @ few.vecs.T
    nearest = int(np.argmax(sims[0]))
    prompt = base.prompt(tx[5], [(tx[j], ty[j]) for j in np.argsort(-sims[0])[:3][::-1]])
    assert prompt.index(tx[nearest]) > prompt.index("Answer with one of")
    preds = few.predict(tx[:4])
    assert all(set(p.probs) == set(spec.labels) for p in preds)


def test_label_and_text_errors(smollm: slmkit.Model) -> None:
    with pytest.raises(LabelError, match="at least two"):
        LikelihoodClassifier(smollm, ["only"])
    with pytest.raises(LabelError, match="duplicate"):
        LikelihoodClassifier(smollm, ["a", "b", "a"])
    clf = LikelihoodClassifier(smollm, ["a", "b"])
    with pytest.raises(EmptyPromptError):
        clf.predict(["fine", "  "])
    with pytest.raises(EmptyPromptError):
        clf.predict([])


def test_read_rows_reports_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "a"}\n{oops\n\n{"body": "b"}\n[1]\n{"text": "c"}\n{"text": ""}\n')
    res = read_rows(f)
    assert [r["text"] for r in res.rows] == ["a", "c"]
    assert [ln for ln, _ in res.errors] == [2, 4, 5, 7]
    assert "broken JSON" in res.errors[0][1] and "missing field 'text'" in res.errors[1][1]
    with pytest.raises(DataError, match=r"d.jsonl:2: broken JSON"):
        read_rows(f, on_error="fail")
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\nhello,1\n,0\n")
    res = read_rows(csv, required=("text", "label"))
    assert len(res.rows) == 1 and res.errors[0][0] == 3
    with pytest.raises(DataError, match="no usable rows"):
        read_rows(csv, required=("missing",))


def test_split_text_keeps_every_word() -> None:
    text = "\n\n".join(
        " ".join(f"w{p}_{s}_{i}." for i in range(7)) for p in range(20) for s in range(3)
    )
    count = lambda t: len(t.split())  # noqa: E731
    chunks = split_text(text, 25, count)
    assert all(count(c) <= 25 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_long_meeting_is_summarized_with_full_coverage(real_store: Store) -> None:
    spec = builtin_task("qmsum")
    docs, _ = spec.load()  # type: ignore[call-arg]
    real_store.pull("smollm2-135m-instruct")
    with slmkit.load("smollm2-135m-instruct", n_ctx=1024, store=real_store) as m:
        doc = min((d for d in docs if m.count_tokens(d) > 4 * 1024), key=len)
        res = Summarizer(m, max_words=40)(doc)
    assert res.document_tokens > 4 * 1024
    assert res.chunks > 4 and res.levels >= 2
    assert res.coverage == 1.0  # every non-space character was in some chunk
    assert len(res.summary.split()) > 5


def test_extraction_always_validates(smollm: slmkit.Model) -> None:
    import jsonschema

    texts, _ = task("sms_spam").load("test", 12)
    ex = Extractor(smollm, SMS_SCHEMA)
    for t in texts:
        data = ex(t).data
        jsonschema.validate(data, SMS_SCHEMA)


def test_extraction_with_pydantic_model(smollm: slmkit.Model) -> None:
    class Person(BaseModel):
        name: str
        age: int

    out = Extractor(smollm, Person)("Maria Lopez is 34 years old and lives in Madrid.").data
    assert set(out) == {"name", "age"} and isinstance(out["age"], int)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "nonsense"}}},
        {"type": "array", "items": {"type": "string"}},
        ["not", "a", "schema"],
    ],
)
def test_bad_schemas_are_clear_errors(smollm: slmkit.Model, schema: object) -> None:
    with pytest.raises(SchemaError):
        Extractor(smollm, schema)  # type: ignore[arg-type]


def test_extract_sms_gold_rules() -> None:
    from slmkit.evaluate import field_matches, sms_gold

    gold = sms_gold("WINNER! Call 09061 701461 to claim your prize", "spam")
    assert gold == {"spam": True, "phone_number": "09061701461", "mentions_prize": True}
    assert field_matches(
        {"spam": True, "phone_number": "09061-701461", "mentions_prize": False}, gold
    ) == {"spam": True, "phone_number": True, "mentions_prize": False}
    assert json.loads(json.dumps(SMS_SCHEMA))["required"] == [
        "spam",
        "phone_number",
        "mentions_prize",
    ]


def test_head_on_the_language_models_own_hidden_states(smollm_path: Path) -> None:
    spec = task("sms_spam")
    tx, ty = spec.load("train", 600)
    ex, ey = spec.load("test", 300)

    def balanced(texts: list[str], labels: list[str], n: int) -> tuple[list[str], list[str]]:
        picked = [
            i for lb in ("ham", "spam") for i in [j for j, y in enumerate(labels) if y == lb][:n]
        ]
        return [texts[i] for i in picked], [labels[i] for i in picked]

    tx, ty = balanced(tx, ty, 50)
    ex, ey = balanced(ex, ey, 20)
    emb = load_embedder("slm:smollm2-135m-instruct")
    head = HeadClassifier.fit(emb, tx, ty)
    acc = sum(p.label == g for p, g in zip(head.predict(ex), ey, strict=True)) / len(ey)
    assert head.embedder.name == "slm:smollm2-135m-instruct"
    assert acc >= 0.8, acc  # balanced: chance is 0.5


def test_top_level_task_api_and_template(smollm: slmkit.Model) -> None:
    preds = slmkit.classify(
        ["I adored it", "utterly boring"],
        ["negative", "positive"],
        model=smollm,
        instruction="Is the sentiment positive or negative?",
    )
    assert len(preds) == 2 and all(set(p.probs) == {"negative", "positive"} for p in preds)
    clf = LikelihoodClassifier(
        smollm, ["no", "yes"], template="Q: Is this a question? {text}\nOptions: {labels}"
    )
    prompt = clf.prompt("Where is Paris")
    assert "Q: Is this a question? Where is Paris" in prompt and "Options: no, yes" in prompt
    with pytest.raises(slmkit.SlmkitError, match="must contain"):
        LikelihoodClassifier(smollm, ["no", "yes"], template="no placeholder")
    res = slmkit.summarize("The cat sat on the mat. It was a sunny day.", model=smollm)
    assert res.chunks == 1 and res.coverage == 1.0 and res.summary
