"""lm-evaluation-harness (the real `lm-eval` package) against `slm serve`, unchanged: its
`local-completions` model sends token-id prompts with `echo` and `logprobs`, and tokenizes
through the server's vLLM-style tokenizer endpoints. The task is ARC-Easy from the shared
file, defined in a local task YAML; its accuracy must equal `slm eval mc` on the same items
(same prompts, same scoring)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from slmkit.catalog.store import Store
from slmkit.cli import cli
from tests.test_mc import ARC_DEV
from tests.test_serve import LiveServer

MODEL = "smollm2-135m-instruct"
N = 24
TASK = """task: arc_easy_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question.stem}}}}\\nAnswer:"
doc_to_choice: "{{{{question.choices | map(attribute='text') | list}}}}"
doc_to_target: "{{{{(question.choices | map(attribute='label') | list).index(answerKey)}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""


@pytest.fixture(scope="module")
def served(real_store: Store, smollm_path: Path) -> Iterator[LiveServer]:
    from slmkit.serve import ModelProvider, ServerSettings, create_app

    provider = ModelProvider(real_store, n_seq=4, n_ctx=2048, max_waiting=16, allowed=(MODEL,))
    server = LiveServer(create_app(ServerSettings(), provider))
    yield server
    server.close()
    provider.close()


def test_lm_eval_local_completions_matches_slm_eval_mc(served: LiveServer, tmp_path: Path) -> None:
    data = tmp_path / "arc.jsonl"
    data.write_text("".join(ARC_DEV.read_text().splitlines(keepends=True)[:N]))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "arc_easy_local.yaml").write_text(TASK.format(path=data))
    args = (
        f"base_url={served.url}/v1/completions,model={MODEL},num_concurrent=1,max_retries=1,"
        "tokenized_requests=True"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "x"}
    r = subprocess.run(
        [sys.executable, "-m", "lm_eval", "run", "--model", "local-completions"]
        + ["--model_args", args, "--tasks", "arc_easy_local"]
        + ["--include_path", str(tmp_path / "tasks"), "--output_path", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (result_file,) = (tmp_path / "out").rglob("results_*.json")
    harness = json.loads(result_file.read_text())["results"]["arc_easy_local"]

    ours = CliRunner().invoke(
        cli, ["eval", "mc", str(data), "--format", "arc", "--model", MODEL, "--json"]
    )
    assert ours.exit_code == 0, ours.output
    mine = json.loads(ours.stdout)
    assert mine["n"] == N
    assert abs(harness["acc,none"] - mine["acc"]) <= 0.005  # within half a point: the same
    assert abs(harness["acc_norm,none"] - mine["acc_norm"]) <= 0.005
