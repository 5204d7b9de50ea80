"""GGUF quantization of the real SmolLM2-135M through llama.cpp, and the accuracy guard on a real
task: re-quantizing refused unless asked, an F16 source, a level that passes and one refused."""

from __future__ import annotations

from pathlib import Path

import pytest

import slmkit
from slmkit.catalog.store import Store
from slmkit.compress import quantize
from slmkit.errors import GuardRefusedError, InputError
from slmkit.settings import Settings


@pytest.fixture(scope="module")
def f16_store(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> Store:
    """A fresh store holding SmolLM2 (Q4_1, imported and verified) and its F16 expansion."""
    root = tmp_path_factory.mktemp("gguf")
    store = Store(root, Settings(home=root))
    store.import_file(smollm_path, model_id=slmkit.DEFAULT_MODEL)
    with pytest.raises(InputError, match="already quantized \\(Q4_1\\).*--allow-requantize"):
        quantize(slmkit.DEFAULT_MODEL, "f16", "smollm2-f16", store=store)
    quantize(slmkit.DEFAULT_MODEL, "f16", "smollm2-f16", allow_requantize=True, store=store)
    return store


def test_f16_from_q4_1_is_registered_and_runs(f16_store: Store) -> None:
    entry = f16_store.get("smollm2-f16")
    assert entry.quantization == "F16" and entry.format == "gguf"
    assert entry.lineage and entry.lineage["method"] == "quantize-f16"
    path = f16_store.path("smollm2-f16")
    assert path is not None and path.stat().st_size > 1.9 * entry.params  # 2 bytes a weight
    with slmkit.load("smollm2-f16", store=f16_store) as model:
        out = model.chat("Say hello.", max_tokens=8, temperature=0)
        assert out.text.strip() and out.stats.completion_tokens > 0


def test_q8_0_passes_a_loose_guard_with_a_full_report(f16_store: Store) -> None:
    res = quantize(
        "smollm2-f16", "q8_0", "smollm2-q8", guard="sst2", limit=32, max_drop=100, store=f16_store
    )
    src, dst = res.report["source"], res.report["result"]
    assert dst["size_bytes"] < 0.6 * src["size_bytes"]
    for side in (src, dst):
        assert side["decode_tokens_per_s"] > 0 and side["peak_rss_mb"] > 100
        assert 0 <= side["score"] <= 100 and side["task"]["n"] == 32
    assert f16_store.get("smollm2-q8").quantization == "Q8_0"


def test_guard_refuses_q4_0_under_a_strict_threshold(f16_store: Store) -> None:
    # Measured: sst2 (first 100 dev rows, zero-shot) 67 points at F16, 62 at Q4_0.
    with pytest.raises(GuardRefusedError, match="more than --max-drop 0") as e:
        quantize(
            "smollm2-f16",
            "q4_0",
            "smollm2-q4",
            guard="sst2",
            limit=100,
            max_drop=0,
            store=f16_store,
        )
    assert e.value.report["drop_points"] > 0
    assert f16_store.path("smollm2-q4") is None
    assert not [p for p in (f16_store.root / "models").iterdir() if p.name.startswith(".")]
