"""Summary baselines and the extractive summarizer, model-free (a hashed bag-of-words
embedder stands in for MiniLM)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from slmkit.bench import BenchConfig, check_tasks, finish, summary_method
from slmkit.bench.report import flat
from slmkit.catalog.store import Store
from slmkit.errors import DataError, EmptyPromptError, InputError
from slmkit.serve import ModelProvider, ServerSettings, create_app
from slmkit.tasks.data import SummarizationTask, summary_split
from slmkit.tasks.extractive import ExtractiveSummarizer, lead, split_sentences
from tests.fakes import FakeEmbedder

ARTICLE = (
    "Mr. Smith of the U.S. Navy met the harbour board on Monday about the new port. "
    "The port will open in May and hold forty ships. "
    "Weather was mild. "
    "The board said the port will hold forty ships and cost ten million dollars. "
    "Dr. Jones, who chairs the board, said the port opens in May.\n"
    "Fishermen worry that the port will take their harbour berths away.\n"
    "Yep ."
)


@pytest.fixture
def fake_minilm(monkeypatch: pytest.MonkeyPatch) -> FakeEmbedder:
    """load_embedder('minilm-int8') gives the fake, wherever it is called."""
    emb = FakeEmbedder()
    monkeypatch.setattr("slmkit.tasks.embed.load_embedder", lambda *a, **k: emb)
    return emb


def test_sentences_keep_abbreviations_and_lines() -> None:
    sents = split_sentences(ARTICLE)
    assert sents[0].startswith("Mr. Smith of the U.S. Navy") and sents[0].endswith("new port.")
    assert sents[4].startswith("Dr. Jones") and len(sents) == 7
    assert lead(ARTICLE, 2) == " ".join(sents[:2])
    with pytest.raises(InputError, match="k >= 1"):
        lead(ARTICLE, 0)


def test_extractive_picks_central_sentences_in_order_within_the_budget() -> None:
    s = ExtractiveSummarizer(FakeEmbedder(), max_words=35, lead_weight=0.0, diversity=0.5)
    res = s(ARTICLE)
    sents = split_sentences(ARTICLE)
    assert res.method == "extractive" and res.chunks == len(sents)
    assert list(res.picked) == sorted(res.picked) and 6 not in res.picked  # "Yep ." never
    assert "Weather was mild." not in res.summary  # shares nothing with the rest
    assert len(res.summary.split()) <= 35
    assert res.summary == " ".join(sents[i] for i in res.picked)
    # all lead: the first sentences; a duplicate of a picked sentence is not picked again
    assert (
        ExtractiveSummarizer(FakeEmbedder(), max_words=16, lead_weight=1.0)(ARTICLE).picked[0] == 0
    )
    same = "The port opens in May for ships.\n"
    twice = same + same + "Fish sell well at the port in May."
    res = ExtractiveSummarizer(FakeEmbedder(), max_words=15, lead_weight=0.0, diversity=2.0)(twice)
    assert res.picked in ((0, 2), (1, 2))
    d = res.as_dict()
    assert d["method"] == "extractive" and d["sentences"] == 3 and d["picked"] == list(res.picked)


def test_extractive_bad_input() -> None:
    s = ExtractiveSummarizer(FakeEmbedder(), max_words=20)
    with pytest.raises(EmptyPromptError):
        s("  \n ")
    with pytest.raises(InputError, match="no sentence boundary in a document of 300 words"):
        s("word " * 300)
    assert s("just one short sentence here").summary == "just one short sentence here"
    with pytest.raises(InputError, match="max_words"):
        ExtractiveSummarizer(FakeEmbedder(), max_words=2)
    with pytest.raises(InputError, match="lead_weight"):
        ExtractiveSummarizer(FakeEmbedder(), lead_weight=1.5)


def test_a_2mb_document_is_summarized_with_progress() -> None:
    doc = (ARTICLE + "\n") * (2_000_000 // len(ARTICLE))
    seen: list[tuple[int, int]] = []
    res = ExtractiveSummarizer(FakeEmbedder(), max_words=60)(
        doc, progress=lambda i, n: seen.append((i, n))
    )
    assert len(doc) > 1_900_000 and seen[-1][0] == seen[-1][1] == res.chunks
    assert len(seen) > 10 and 0 < len(res.summary.split()) <= 60


def test_the_split_is_deterministic_disjoint_and_one_in_five() -> None:
    rows = [{"id": f"a{i}", "document": f"d{i}", "summary": "s"} for i in range(100)]
    test, train = summary_split(rows, "test"), summary_split(rows, "train")
    assert len(test) == 20 and len(train) == 80
    assert {r["id"] for r in test}.isdisjoint(r["id"] for r in train)
    assert summary_split(rows[::-1], "test") == test[::-1]  # the order of rows does not matter
    marked = [{**r, "split": "test" if i < 3 else "validation"} for i, r in enumerate(rows[:10])]
    assert [r["id"] for r in summary_split(marked, "test")] == ["a0", "a1", "a2"]


def test_builtin_splits_never_overlap() -> None:
    from slmkit.evaluate.runner import task_spec

    test = task_spec("cnn_dailymail-test")
    assert isinstance(test, SummarizationTask) and test.split == "test"
    docs, _ = test.load()
    train, _ = task_spec("cnn_dailymail-train").load()
    assert len(docs) == 200 and len(train) == 800 and not set(docs) & set(train)
    q_test, _ = task_spec("qmsum-test").load()
    assert len(q_test) == 35


def _pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"document": ARTICLE, "summary": "The port opens in May and holds forty ships."},
        {"document": ARTICLE.replace("port", "dock"), "summary": "A dock for forty ships."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_reports_lead_k_beside_extractive_and_lead(tmp_path: Path, fake_minilm: Any) -> None:
    from slmkit.evaluate.runner import evaluate

    path = str(_pairs(tmp_path))
    ex = evaluate(path, model=None, method="extractive", max_words=20)
    assert ex["method"] == "extractive" and ex["n"] == 2 and 0 < ex["rougeL"] <= 1
    base = ex["lead_baseline"]
    assert base["k"] == 3 and "user's file" in base["k_chosen"]  # no training split
    ld = evaluate(path, model=None, method="lead", lead_k=3)
    assert ld["rougeL"] == base["rougeL"] and ld["lead_k"] == 3
    with pytest.raises(InputError, match="zeroshot or hybrid .*extractive or lead"):
        evaluate(path, model=None, method="fewshot")
    assert ex["skipped_summary_longer"] == 0
    rows = [
        {"document": "Short one.", "summary": ARTICLE},
        {"document": ARTICLE, "summary": "Port."},
    ]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = evaluate(path, model=None, method="lead")
    assert got["n"] == 1 and got["skipped_summary_longer"] == 1
    Path(path).write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(DataError, match="every summary is longer than its document"):
        evaluate(path, model=None, method="lead")


def test_bench_cells_of_summary_methods_carry_the_lead_line() -> None:
    with pytest.raises(InputError, match="lead summarizes; sst2"):
        check_tasks(["sst2"], ["lead"])
    check_tasks(["cnn_dailymail-test"], ["lead", "lead-3", "extractive"])
    with pytest.raises(InputError, match="lead-3 summarizes; sms_spam"):
        check_tasks(["sms_spam"], ["smollm2-135m-instruct", "lead-3"])
    assert summary_method("lead-3") == ("lead", 3, None) and summary_method("lead-x") is None
    assert summary_method("hybrid:m") == ("hybrid", None, "m") and summary_method("hybrid:") is None
    task = {"n": 4, "rouge1": 0.3, "rouge2": 0.1, "rougeL": 0.2, "latency_ms_p50": 5.0}
    task["lead_baseline"] = {"k": 2, "rouge1": 0.28, "rouge2": 0.1, "rougeL": 0.18}
    rec = {"key": "extractive|t", "model": "extractive", "quant": "-", "status": "ok"}
    cfg = BenchConfig(models=["extractive"], tasks=["cnn_dailymail-test"])
    row = flat(finish({**rec, "task": "cnn_dailymail-test", "task_result": task}, cfg))
    assert row["score"] == 20.0 and row["baseline"] == 18.0 and row["baseline_name"] == "lead-2"
    assert row["rouge1"] == 30.0 and row["rouge2"] == 10.0
    maj = flat({"task_detail": {"majority_baseline": 0.5}})
    assert maj["baseline"] == 50.0 and maj["baseline_name"] == "majority"


def test_summarize_endpoint_extractive_without_a_model(fake_store: Store) -> None:
    provider = ModelProvider(fake_store, n_seq=2, n_ctx=2048)
    provider._embedder = FakeEmbedder()
    try:
        with TestClient(create_app(ServerSettings(), provider)) as c:
            r = c.post(
                "/v1/summarize", json={"input": ARTICLE, "method": "extractive", "max_words": 30}
            )
            body = r.json()
            assert r.status_code == 200 and body["method"] == "extractive" and body["model"] is None
            assert body["summary"] and body["sentences"] == 7 and provider.loaded() == {}
            r = c.post("/v1/summarize", json={"input": ARTICLE})
            assert r.status_code == 400 and "model is required" in r.text
            body = {"input": ARTICLE, "method": "hybrid", "model": "fake-chat", "max_words": 10}
            r = c.post("/v1/summarize", json=body)
            assert r.status_code == 200 and r.json()["method"] == "hybrid" and r.json()["picked"]
            r = c.post("/v1/summarize", json={"input": "word " * 200, "method": "extractive"})
            assert r.status_code == 400 and "no sentence boundary" in r.text
    finally:
        provider.close()


def test_cli_and_batch_summarize_extractive(tmp_path: Path, fake_minilm: Any) -> None:
    from slmkit.cli import cli
    from slmkit.tasks.registry import make_task

    doc = tmp_path / "doc.txt"
    doc.write_text(ARTICLE)
    out = CliRunner().invoke(cli, ["summarize", str(doc), "--method", "extractive", "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    sents = split_sentences(ARTICLE)
    assert got["method"] == "extractive" and got["picked"]
    assert got["summary"] == " ".join(sents[i] for i in got["picked"])
    fn = make_task("summarize", {"method": "extractive", "max_words": 20})
    (res,) = fn([ARTICLE])
    assert res["summary"] and len(res["summary"].split()) <= 20
    empty = CliRunner().invoke(
        cli, ["summarize", str(tmp_path / "gone.txt"), "--method", "extractive"]
    )
    assert empty.exit_code != 0


def test_hybrid_gives_the_model_only_the_picked_sentences(fake_model: Any) -> None:
    from slmkit.tasks.extractive import HybridSummarizer

    doc = (ARTICLE + "\n") * 20
    seen: list[str] = []
    chat = fake_model.chat
    fake_model.chat = lambda prompt, **kw: seen.append(prompt) or chat(prompt, **kw)
    res = HybridSummarizer(fake_model, FakeEmbedder(), max_words=20)(doc)
    assert res.method == "hybrid" and res.picked and len(seen) == 1
    kept = ExtractiveSummarizer(FakeEmbedder(), max_words=40)(doc).summary
    assert kept in seen[0] and len(seen[0]) < len(doc) / 5
    assert res.document_tokens == fake_model.count_tokens(kept) and res.as_dict()["picked"]


def _summary_rows(tmp_path: Path, n: int = 30) -> Path:
    rows = [
        {"document": (ARTICLE + " ") * (1 + i % 4) + f"Row {i} ends here.", "summary": f"Port {i}."}
        for i in range(n)
    ]
    rows[3]["summary"] = " ".join(["far too long"] * 400)  # longer than its document
    rows[5]["document"] = " ".join(["word"] * 300)  # no sentence boundary at all
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_finetune_summary_data_is_found_and_the_report_rows_refused(tmp_path: Path) -> None:
    from slmkit.train.summaries import summary_task

    train = summary_task("cnn_dailymail")
    assert train is not None and train.split == "train" and train.name == "cnn_dailymail"
    qmsum = summary_task("qmsum-train")
    assert qmsum is not None and qmsum.name == "qmsum" and qmsum.split == "train"
    with pytest.raises(DataError, match="held back"):
        summary_task("cnn_dailymail-test")
    with pytest.raises(DataError, match="cnn_dailymail-test"):  # names the splits there are
        summary_task("cnn_dailymail-dev")
    assert summary_task(str(_summary_rows(tmp_path))) is not None
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    assert summary_task(str(pairs)) is None and summary_task("sst2") is None


def test_finetune_summary_prompts_are_the_summarizers_and_keep_the_lead(
    tmp_path: Path, fake_model: Any
) -> None:
    from slmkit.tasks.summarize import Summarizer
    from slmkit.train import FinetuneConfig
    from slmkit.train.summaries import summary_pairs, summary_task

    data = str(_summary_rows(tmp_path))
    cfg = FinetuneConfig(data=data, base="fake-chat", out="x", max_length=256, max_words=20)
    cfg = cfg.resolved(True)
    task = summary_task(data)
    assert task is not None
    got = summary_pairs(task, cfg, fake_model)
    assert got.extra["skipped_summary_longer"] == 1 and got.extra["skipped_no_sentence"] == 0
    assert len(got.prompts) + len(got.held_prompts) == 29 and len(got.held_prompts) == 3
    head = Summarizer.prompt("", 20)
    answer = 2 * 20 + 16
    for prompt in got.prompts + got.held_prompts:
        assert prompt.startswith(head)
        text = prompt[len(head) :]
        # the lead: whole leading sentences (only the no-boundary row is cut mid-"sentence")
        assert text and (text.startswith("Mr. Smith") or text.startswith("word"))
        wrapped = fake_model.format_chat([{"role": "user", "content": prompt}])
        assert fake_model.count_tokens(wrapped) + answer <= 256
    # long documents are cut to their lead, not dropped: every row is there (29 above)
    docs = {
        r["summary"]: r["document"] for r in map(json.loads, Path(data).read_text().splitlines())
    }
    cut = [p for p, ref in zip(got.prompts, got.responses, strict=True) if len(p) < len(docs[ref])]
    assert cut
    assert set(got.responses).isdisjoint(got.held_responses)


def test_finetune_summary_extract_input_is_what_hybrid_feeds_the_model(
    tmp_path: Path, fake_model: Any, fake_minilm: Any
) -> None:
    from slmkit.tasks.summarize import Summarizer
    from slmkit.train import FinetuneConfig
    from slmkit.train.summaries import summary_pairs, summary_task

    data = str(_summary_rows(tmp_path))
    cfg = FinetuneConfig(
        data=data, base="fake-chat", out="x", summary_input="extract", max_words=20, limit=12
    ).resolved(True)
    task = summary_task(data)
    assert task is not None
    ticks: list[int] = []
    got = summary_pairs(task, cfg, fake_model, ticks.append)
    assert sum(ticks) == 12  # one tick per document picked from
    kept = ExtractiveSummarizer(fake_minilm, max_words=40)
    docs = {
        r["summary"]: r["document"] for r in map(json.loads, Path(data).read_text().splitlines())
    }
    for prompt, ref in zip(got.prompts, got.responses, strict=True):
        assert prompt == Summarizer.prompt(kept(docs[ref]).summary, 20)
    limited = got.extra["skipped_no_sentence"] + len(got.prompts) + len(got.held_prompts)
    assert limited == 12


def test_summary_input_on_other_data_is_refused(tmp_path: Path, fake_store: Store) -> None:
    from slmkit.train import FinetuneConfig
    from slmkit.train.run_causal import _pairs

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    cfg = FinetuneConfig(data=str(pairs), base="fake-chat", out="x", summary_input="extract")
    with pytest.raises(InputError, match="summary-input"):
        _pairs(cfg.resolved(True), fake_store, None)


def test_summaries_on_an_encoder_base_point_at_a_chat_base() -> None:
    from slmkit.train.data import load_train_data

    with pytest.raises(DataError, match="chat base"):
        load_train_data("cnn_dailymail")
