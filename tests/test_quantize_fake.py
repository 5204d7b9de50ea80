"""Compression of a tiny fine-tuned encoder (int8 ONNX, fp32 ONNX, dynamic-int8 torch) and the
accuracy guard's decisions, without real weights; GGUF quantization is in test_quantize.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slmkit.catalog.store import Store
from slmkit.compress import quantize
from slmkit.errors import GuardRefusedError, InputError, InvalidOptionsError, LabelError
from slmkit.settings import Settings
from slmkit.train import FinetuneConfig, finetune
from tests.fakes import fake_entry, install_fake
from tests.tiny_models import sentiment_rows, tiny_encoder, write_jsonl


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    root = tmp_path_factory.mktemp("q")
    store = Store(root / "store", Settings(home=root / "store", n_threads=1))
    data = write_jsonl(root / "train.jsonl", sentiment_rows(300, seed=1))  # type: ignore[arg-type]
    test = write_jsonl(root / "test.jsonl", sentiment_rows(80, seed=7))  # type: ignore[arg-type]
    base = tiny_encoder(root / "bert")
    cfg = FinetuneConfig(
        data=str(data),
        base=str(base),
        out="tiny",
        epochs=4,
        lr=3e-3,
        batch_size=16,
        freeze_embeddings=False,
    )
    finetune(cfg, store=store)
    return store, test


def _leftovers(store: Store) -> list[str]:
    return [p.name for p in (store.root / "models").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("qtype", ["int8", "onnx", "int8-torch"])
def test_encoder_compression_keeps_predictions_and_passes_the_guard(
    trained: tuple[Store, Path], qtype: str
) -> None:
    from slmkit.tasks.finetuned import load_classifier

    store, test = trained
    out = f"tiny-{qtype}"
    res = quantize("tiny", qtype, out, guard=str(test), max_drop=5, limit=80, store=store)
    entry = store.get(out)
    assert entry.kind == "classifier" and entry.lineage and entry.lineage["base"] == "tiny"
    assert entry.format == ("safetensors" if qtype == "int8-torch" else "onnx")
    assert entry.sources[0].path == str(res.path)  # type: ignore[union-attr]
    rep = res.report
    assert rep["source"]["score"] >= 90 and rep["drop_points"] <= 5
    for side in ("source", "result"):
        assert {"load_s", "items_per_s", "peak_rss_mb", "size_bytes"} <= set(rep[side])
    # (a model this tiny is not smaller as int8: scales and graph dominate; see test_quantize.py)
    texts = [r["text"] for r in sentiment_rows(40, seed=11)]
    a = np.array([list(p.probs.values()) for p in load_classifier("tiny", store).predict(texts)])
    b = np.array([list(p.probs.values()) for p in load_classifier(out, store).predict(texts)])
    tol = 1e-4 if qtype == "onnx" else 0.1  # fp32 ONNX is the same function
    assert np.abs(a - b).max() < tol
    assert not _leftovers(store)


def test_guard_refuses_a_drop_and_registers_nothing(
    trained: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, test = trained
    scores = iter([95.0, 93.5])  # source, then result

    def measured(kind: str, path: Path, task: str, limit: int) -> dict[str, Any]:
        return {"score": next(scores), "size_bytes": 1}

    monkeypatch.setattr("slmkit.compress.measure.measure_in_child", measured)
    with pytest.raises(GuardRefusedError, match="fell 1.50 points") as e:
        quantize("tiny", "int8", "refused", guard=str(test), max_drop=1.0, store=store)
    assert e.value.report["drop_points"] == 1.5
    assert store.path("refused") is None and not _leftovers(store)


def test_bad_requests_fail_before_any_work(trained: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = trained
    with pytest.raises(InvalidOptionsError, match="must be one of int8, onnx"):
        quantize("tiny", "q4_k_m", "x", store=store)
    other = write_jsonl(tmp_path / "spam.jsonl", [{"text": "hi", "label_text": "ham"}])
    with pytest.raises(LabelError, match="trained on negative, positive"):
        quantize("tiny", "int8", "x", guard=str(other), store=store)
    with pytest.raises(InputError, match="not installed|unknown model"):
        quantize("nope", "int8", "x", store=store)
    install_fake(store, fake_entry("q4-model").model_copy(update={"quantization": "Q4_K_M"}))
    with pytest.raises(InputError, match="already quantized .*--allow-requantize"):
        quantize("q4-model", "q8_0", "x", store=store)
    with pytest.raises(InvalidOptionsError, match="q8_0"):
        quantize("q4-model", "int8", "x", store=store)
    assert store.path("x") is None and not _leftovers(store)
