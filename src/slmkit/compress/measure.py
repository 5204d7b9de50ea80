"""Measure one model file on a task, in a fresh process so its peak RSS is its own:
`python -m slmkit.compress.measure KIND PATH TASK LIMIT` prints one JSON object.

Figures: size, load time, items/s on the task, decode tokens/s (GGUF), peak RSS, and the
task score in points (accuracy, mean field accuracy for extract_sms, ROUGE-L for summaries).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from slmkit.catalog.memory import own_peak_rss_mb
from slmkit.errors import InputError, RuntimeFailure

DECODE_PROMPT = "Write a short paragraph about the sea."


def score_points(result: dict[str, Any]) -> float:
    """The one number the guard compares, in points (0-100)."""
    if "accuracy" in result:
        return 100 * float(result["accuracy"])
    if "field_accuracy" in result:
        fields = result["field_accuracy"].values()
        return 100 * sum(fields) / len(fields)
    return 100 * float(result.get("rougeL", 0.0))


def measure_encoder(folder: Path, task: str, limit: int) -> dict[str, Any]:
    from slmkit.evaluate.runner import eval_classifier, task_spec
    from slmkit.tasks.data import ClassificationTask
    from slmkit.tasks.finetuned import EncoderClassifier

    t0 = time.perf_counter()
    clf = EncoderClassifier.from_path(folder)
    load_s = time.perf_counter() - t0
    spec = task_spec(task)
    if not isinstance(spec, ClassificationTask):
        raise InputError(f"{task} is not a classification task")
    res = eval_classifier(spec, clf, limit)
    return {"load_s": round(load_s, 3), "items_per_s": res["items_per_s"], "task": res}


def measure_gguf(path: Path, task: str, limit: int) -> dict[str, Any]:
    from slmkit.evaluate.runner import evaluate
    from slmkit.loading import load

    t0 = time.perf_counter()
    model = load(path, n_ctx=2048)
    load_s = time.perf_counter() - t0
    if model.backend.chat_template() is not None:
        out = model.chat(DECODE_PROMPT, max_tokens=64, temperature=0.0)
    else:
        out = model.complete(DECODE_PROMPT, max_tokens=64, temperature=0.0)
    model.close()
    res = evaluate(task, model=str(path), limit=limit, n_ctx=2048)
    return {
        "load_s": round(load_s, 3),
        "decode_tokens_per_s": round(out.stats.tokens_per_s, 2),
        "items_per_s": res.get("items_per_s"),
        "task": res,
    }


def run(kind: str, path: Path, task: str, limit: int) -> dict[str, Any]:
    fn = measure_encoder if kind == "encoder" else measure_gguf
    out = fn(path, task, limit)
    from slmkit.runtime.encoder import weights_file

    main = weights_file(path) if path.is_dir() else path
    out.update(
        size_bytes=main.stat().st_size,
        peak_rss_mb=round(own_peak_rss_mb(), 1),
        score=round(score_points(out["task"]), 2),
    )
    return out


def measure_in_child(kind: str, path: Path, task: str, limit: int) -> dict[str, Any]:
    """run() in a fresh Python process; RuntimeFailure with its stderr if it fails."""
    cmd = [sys.executable, "-m", "slmkit.compress.measure", kind, str(path), task, str(limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        from slmkit.runtime.native import describe_exit

        tail = proc.stderr.strip().splitlines()[-3:]
        why = describe_exit(proc.returncode)
        raise RuntimeFailure(f"measuring {path.name} failed ({why}): {' '.join(tail)}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    kind_, path_, task_, limit_ = sys.argv[1:5]
    print(json.dumps(run(kind_, Path(path_), task_, int(limit_))))
