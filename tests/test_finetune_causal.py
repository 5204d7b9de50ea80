"""LoRA on the real SmolLM2-135M for `extract_sms` at a small scale: the held-out response
tokens improve on the base model, and the merged F16 GGUF runs through `slm run`, `slm eval`
and the server like any catalog model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai

from slmkit.catalog.store import Store
from slmkit.settings import Settings

SLM = [sys.executable, "-m", "slmkit"]


def _slm(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLMKIT_HOME": str(home)}
    return subprocess.run(
        [*SLM, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def test_lora_on_smollm2_improves_and_runs_like_any_model(
    tmp_path: Path, real_store: Store, smollm_path: Path
) -> None:
    from slmkit.serve import ModelProvider, ServerSettings, create_app
    from tests.test_serve import LiveServer

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "smollm2-135m-instruct").symlink_to(smollm_path.parent)
    r = _slm(
        home,
        *("finetune", "extract_sms", "--base", "smollm2-135m-instruct", "--out", "ext"),
        *("--limit", "60", "--batch-size", "4", "--eval-every", "3", "--max-minutes", "1.5"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    m = made["metrics"]
    assert m["held_token_accuracy"] > m["base_token_accuracy"], m
    assert made["lineage"]["method"] == "causal-lora"
    assert made["lineage"]["base"] == "smollm2-135m-instruct"
    assert not (home / "runs" / "ext").exists()

    r = _slm(home, "eval", "extract_sms", "--model", "ext", "--limit", "4", "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["model"] == "ext" and ev["schema_valid"] == 1.0
    r = _slm(home, "run", "ext", "Say hello.", "--max-tokens", "8", "--temperature", "0")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr

    store = Store(home, Settings(home=home))
    provider = ModelProvider(store, n_seq=2, n_ctx=1024, max_waiting=4)
    server = LiveServer(create_app(ServerSettings(), provider))
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        assert "ext" in {m.id for m in client.models.list().data}
        out: Any = client.chat.completions.create(
            model="ext", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        assert out.choices[0].message.content
    finally:
        server.close()
        provider.close()


def test_lora_summaries_on_the_training_split_then_hybrid_eval(
    tmp_path: Path, real_store: Store, smollm_path: Path
) -> None:
    """`slm finetune cnn_dailymail --summary-input extract`: the extractive picks of training
    articles as prompts (what --method hybrid feeds the model), the held-out summary tokens
    improve on the base, and the result is evaluated as a hybrid on the held-back split."""
    from slmkit.catalog.assets import MINILM_FP32, MINILM_INT8, asset_dir

    for asset in (MINILM_INT8, MINILM_FP32):  # the int8 model reads the fp32 one's tokenizer
        asset_dir(real_store, asset, pull=True)
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "smollm2-135m-instruct").symlink_to(smollm_path.parent)
    (home / "assets").symlink_to(real_store.root / "assets")
    r = _slm(
        home, "finetune", "cnn_dailymail-test", "--base", "smollm2-135m-instruct", "--out", "x"
    )
    assert r.returncode != 0 and "held back" in r.stderr  # the report's rows are never trained on
    r = _slm(
        home,
        *("finetune", "cnn_dailymail", "--base", "smollm2-135m-instruct", "--out", "sum"),
        *("--summary-input", "extract", "--limit", "40", "--batch-size", "4"),
        *("--eval-every", "3", "--max-minutes", "1", "--json"),
    )
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["metrics"]
    assert m["summary_input"] == "extract" and m["max_words"] == 60
    assert m["train_rows"] + m["held_out_rows"] + m["skipped_no_sentence"] == 40
    assert m["held_token_accuracy"] > m["base_token_accuracy"], m
    r = _slm(
        home,
        "eval",
        "cnn_dailymail-test",
        "--model",
        "sum",
        "--method",
        "hybrid",
        "--limit",
        "2",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["method"] == "hybrid" and ev["n"] == 2 and 0 < ev["rougeL"] <= 1
    assert ev["lead_baseline"]["k"] >= 1
