"""Task code (classification, summarization, extraction checks) on the fake backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import slmkit
from slmkit.errors import InputError, LabelError, SchemaError
from slmkit.tasks.classify import (
    FewShotClassifier,
    HeadClassifier,
    LikelihoodClassifier,
    make_classifier,
)
from slmkit.tasks.extract import Extractor
from slmkit.tasks.summarize import Summarizer
from tests.fakes import FakeEmbedder


def test_zero_shot_picks_the_label_the_scores_favour(fake_model: slmkit.Model) -> None:
    preds = slmkit.classify(["win a prize, spam!", "lunch: ham"], ["ham", "spam"], model=fake_model)
    assert [p.label for p in preds] == ["spam", "ham"]
    assert all(abs(sum(p.probs.values()) - 1) < 1e-9 for p in preds)


def test_calibration_divides_by_the_content_free_prior(fake_model: slmkit.Model) -> None:
    clf = LikelihoodClassifier(fake_model, ["ham", "spam"])
    assert np.allclose(clf.prior(), [0.5, 0.5])  # content-free inputs favour no label
    raw = LikelihoodClassifier(fake_model, ["ham", "spam"], calibrate=False)
    assert clf.predict(["ham"])[0].probs == pytest.approx(raw.predict(["ham"])[0].probs)


def test_batched_and_single_scoring_agree(fake_model: slmkit.Model) -> None:
    a = LikelihoodClassifier(fake_model, ["x", "y"], batched=True).predict(["y y"])
    b = LikelihoodClassifier(fake_model, ["x", "y"], batched=False).predict(["y y"])
    assert a == b


def test_few_shot_puts_the_nearest_example_last(fake_model: slmkit.Model) -> None:
    base = LikelihoodClassifier(fake_model, ["ham", "spam"])
    texts = ["cheap pills now", "meeting at noon", "free money offer"]
    fs = FewShotClassifier(base, texts, ["spam", "ham", "spam"], FakeEmbedder(), k=2)
    prompts: list[str] = []
    base.predict_prompts = lambda ps: prompts.extend(ps) or []  # type: ignore[method-assign]
    fs.predict(["free money today"])
    assert prompts[0].rindex("free money offer") > prompts[0].rindex("cheap pills now")


def test_head_classifier_fits_saves_and_reloads(tmp_path: Path) -> None:
    texts = ["good great fine", "great good", "bad awful", "awful bad poor"] * 3
    labels = ["pos", "pos", "neg", "neg"] * 3
    head = HeadClassifier.fit(FakeEmbedder(), texts, labels)
    assert [p.label for p in head.predict(["great", "awful"])] == ["pos", "neg"]
    path = head.save(tmp_path / "head.json")
    again = HeadClassifier.load(path, lambda name: FakeEmbedder())
    assert again.predict(["great"])[0].probs == pytest.approx(head.predict(["great"])[0].probs)


def test_the_classifier_factory_checks_its_inputs(fake_model: slmkit.Model, tmp_path: Path) -> None:
    assert isinstance(
        make_classifier("zeroshot", labels=["a", "b"], model=fake_model), LikelihoodClassifier
    )
    clf = make_classifier("zeroshot-uncalibrated", labels=["a", "b"], model=fake_model)
    assert isinstance(clf, LikelihoodClassifier) and not clf.calibrate
    with pytest.raises(InputError, match="unknown method"):
        make_classifier("magic", labels=["a", "b"], model=fake_model)
    with pytest.raises(InputError, match="head"):
        make_classifier("head")
    with pytest.raises(InputError, match="examples"):
        make_classifier("fewshot", labels=["a", "b"], model=fake_model)
    with pytest.raises(LabelError):
        make_classifier("zeroshot", labels=["a"], model=fake_model)
    bad = tmp_path / "head.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match="not a slmkit classifier head"):
        make_classifier("head", head=bad)


def test_a_long_document_is_summarized_in_chunks_with_full_coverage(
    fake_store: object,
) -> None:
    model = slmkit.load("fake-chat", store=fake_store, n_ctx=512)  # type: ignore[arg-type]
    doc = " ".join(f"sentence {i} says something." for i in range(300))
    res = Summarizer(model, max_words=20)(doc)
    assert res.chunks > 1 and res.levels >= 1 and res.coverage == 1.0


@pytest.mark.parametrize("schema", [{"type": 3}, {"type": "string"}, "not a schema"])
def test_bad_schemas_are_schema_errors(fake_model: slmkit.Model, schema: object) -> None:
    with pytest.raises(SchemaError):
        Extractor(fake_model, schema)  # type: ignore[arg-type]


def test_summary_chunks_run_concurrently_on_an_engine_with_the_same_result(
    fake_store: object,
) -> None:
    from slmkit.engine import Engine

    model = slmkit.load("fake-chat", store=fake_store, n_ctx=512)  # type: ignore[arg-type]
    doc = " ".join(f"sentence {i} says something." for i in range(300))
    plain = Summarizer(model, max_words=20)(doc)
    engine = Engine(model.backend, n_seq=4, n_ctx=4 * 512)
    ticks: list[tuple[int, int]] = []
    try:
        res = Summarizer(model, max_words=20, engine=engine, window=3)(
            doc, progress=lambda d, n: ticks.append((d, n))
        )
        sizes = engine.batch_sizes
    finally:
        engine.close()
    assert res == plain
    assert max(sizes) == 3  # three chunks decoded together, never more than the window
    assert (res.chunks, res.chunks) in ticks  # progress counted the first level to its end


def test_a_chat_request_does_not_wait_behind_a_summary(fake_store: object) -> None:
    """Mixed load on one engine: while a long document's chunks are being summarized (at
    most half the slots, as background work), a chat request gets its first token from the
    step after the one under way when it arrives: it is admitted ahead of the summary's
    queued chunks and its prompt is prefilled before theirs."""
    import threading
    import time

    from slmkit.engine import Engine
    from slmkit.options import make_options

    model = slmkit.load("fake-chat", store=fake_store, n_ctx=512)  # type: ignore[arg-type]
    engine = Engine(model.backend, n_seq=4, n_ctx=4 * 512)
    engine.runner.delay_s = 0.002  # type: ignore[attr-defined]
    doc = " ".join(f"sentence {i} says something." for i in range(600))
    summarizer = Summarizer(model, max_words=20, engine=engine, window=2)
    worker = threading.Thread(target=summarizer, args=(doc,))
    try:
        worker.start()
        deadline = time.monotonic() + 10
        while engine.running < 2:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        tokens = model.backend.tokenize(model.format_chat([{"role": "user", "content": "hi"}]))
        first: list[int] = []
        done = threading.Event()

        def emit(c: Any) -> None:
            if not first:
                first.append(engine.steps)  # the step that sampled the first token
            if c.finish_reason is not None:
                done.set()

        at = engine.steps
        engine.submit(tokens, make_options(temperature=0, max_tokens=4), emit)
        assert done.wait(10)
        assert worker.is_alive()  # the summary is still running: the chat did not wait for it
    finally:
        worker.join(timeout=60)
        engine.close()
    assert first[0] - at <= 2


def test_summaries_with_prompt_lookup_are_the_same_and_decode_less(fake_store: object) -> None:
    model = slmkit.load("fake-chat", store=fake_store, n_ctx=512)  # type: ignore[arg-type]
    runner = model.backend.runner  # type: ignore[attr-defined]
    doc = " ".join(f"sentence {i} says something." for i in range(120))
    model.chat("warm up", temperature=0, max_tokens=4, prompt_lookup=8)  # exactness probe
    counts = []
    results = []
    for k in (0, 8):
        before = runner.decodes
        results.append(Summarizer(model, max_words=20, prompt_lookup=k)(doc))
        counts.append(runner.decodes - before)
    assert results[0] == results[1]
    assert counts[1] < counts[0] / 2  # the fake echoes its prompt: drafts are kept
