"""Summary baselines and the extractive summarizer with the real MiniLM (int8 ONNX)."""

from __future__ import annotations

import json
from pathlib import Path

from slmkit.bench import BenchConfig, run_bench
from slmkit.bench.report import render
from slmkit.catalog.assets import MINILM_FP32, MINILM_INT8, asset_dir
from slmkit.catalog.store import Store
from slmkit.evaluate.runner import evaluate


def test_extractive_beats_lead_k_on_held_out_news(real_store: Store) -> None:
    """On the first 20 held-back CNN/DailyMail articles the extractive summarizer scores
    above lead-k (k chosen on the training split), the line it must clear."""
    asset_dir(real_store, MINILM_INT8, pull=True)
    asset_dir(real_store, MINILM_FP32, pull=True)  # its tokenizer
    ex = evaluate("cnn_dailymail-test", model=None, method="extractive", limit=20)
    base = ex["lead_baseline"]
    assert base["k_chosen"].startswith("best ROUGE-L on cnn_dailymail-train")
    assert 1 <= base["k"] <= 5 and 0.1 < base["rougeL"] < 0.4
    assert ex["rougeL"] > base["rougeL"], (ex["rougeL"], base)
    assert ex["summary_words_mean"] <= 60 and ex["n"] == 20
    ld = evaluate("cnn_dailymail-test", model=None, method="lead", limit=20)
    assert ld["rougeL"] == base["rougeL"] and ld["lead_k"] == base["k"]


def test_bench_report_draws_the_lead_line(real_store: Store, tmp_path: Path) -> None:
    asset_dir(real_store, MINILM_INT8, pull=True)
    asset_dir(real_store, MINILM_FP32, pull=True)
    config = BenchConfig(
        models=["lead", "extractive"], tasks=["cnn_dailymail-test"], limit=4, repeat=1
    )
    cells = run_bench(config, tmp_path / "b")
    assert [c["status"] for c in cells] == ["ok", "ok"], cells
    k = cells[0]["task_detail"]["lead_k"]
    assert cells[0]["score"] == round(100 * cells[0]["task_detail"]["lead_baseline"]["rougeL"], 2)
    summary = render(tmp_path / "b")
    assert summary.count(f"| lead-{k} |") == 2 and "| extractive | - |" in summary
    page = (tmp_path / "b" / "report.html").read_text()
    assert "lead-k" in page and page.count('src="data:image/png;base64,') >= 1
    assert json.loads((tmp_path / "b" / "results.json").read_text())["cells"][1]["kind"] == "method"


def test_hybrid_reads_a_short_prompt(smollm_path: Path) -> None:
    """SmolLM2 rewrites the extractive pick: it reads fewer tokens than the article has."""
    asset_dir(Store(), MINILM_INT8, pull=True)
    hy = evaluate("cnn_dailymail-test", model="smollm2-135m-instruct", method="hybrid", limit=2)
    assert hy["method"] == "hybrid" and hy["n"] == 2 and 0.05 < hy["rougeL"] < 1
    assert hy["lead_baseline"]["k"] >= 1 and hy["min_coverage"] == 1.0
