"""One cell of `slm bench`, run in a fresh process so its memory figures are its own:
`python -m slmkit.bench.cell SPEC_JSON` prints one JSON object on its last stdout line.

A cell loads one model (timed), measures generation speed on a fixed prompt set
(time to first token, prefill and decode tokens/s; `repeat` runs after one warm-up,
reported as median with min and max), then runs the task on `limit` items through the
same code `slm eval` uses (score, items/s, latency p50/p95), and reports its peak RSS.
An endpoint cell does the same over HTTP (no RSS: the model lives elsewhere).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

# Varied openings so each timed run prefills its own tokens (the prompt cache keeps only
# the shared chat-template prefix, which is reported as cached and left out of prefill).
SPEED_PROMPTS = (
    "Explain in a short paragraph why the sky is blue.",
    "Write three sentences about the history of the bicycle.",
    "Describe, in a few sentences, how a refrigerator keeps food cold.",
    "Give a short account of how bread rises when it is baked.",
)
SPEED_TOKENS = 64


def spread(values: list[float], digits: int = 2) -> dict[str, float]:
    """Median with min and max: the figure and how much it moved between runs."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def speed_stats(stats: list[Any]) -> dict[str, Any]:
    """Median/min/max of TTFT, prefill and decode rates over GenerationStats-like runs."""
    ttft = [1000 * s.ttft_s for s in stats]
    prefill = [
        (s.prompt_tokens - s.cached_tokens) / s.prompt_s
        for s in stats
        if s.prompt_s > 0 and s.prompt_tokens > s.cached_tokens
    ]
    decode = [s.tokens_per_s for s in stats if s.tokens_per_s > 0]
    out: dict[str, Any] = {"runs": len(stats), "ttft_ms": spread(ttft, 1)}
    if prefill:
        out["prefill_tokens_per_s"] = spread(prefill)
    if decode:
        out["decode_tokens_per_s"] = spread(decode)
    return out


def _speed_local(model: Any, repeat: int) -> dict[str, Any]:
    chat = model.backend.chat_template() is not None
    runs = []
    for i in range(repeat + 1):  # the first run warms caches and is not counted
        prompt = SPEED_PROMPTS[i % len(SPEED_PROMPTS)]
        fn = model.chat if chat else model.complete
        out = fn(prompt, max_tokens=SPEED_TOKENS, temperature=0.0)
        if i:
            runs.append(out.stats)
    return speed_stats(runs)


def _load_timed(model_id: str, n_ctx: int | None) -> tuple[dict[str, Any], Any]:
    """Load once (timed) and measure speed; a fine-tuned classifier has no decode speed."""
    from slmkit.catalog.store import Store
    from slmkit.loading import load
    from slmkit.tasks.finetuned import classifier_entry, load_classifier

    t0 = time.perf_counter()
    if classifier_entry(model_id, Store()):
        load_classifier(model_id)  # timed only: the task loads its own
        threads = Store().settings.n_threads
        return {"load_s": round(time.perf_counter() - t0, 3), "n_threads": threads}, None
    model = load(model_id, n_ctx=n_ctx)
    threads = getattr(model.backend, "n_threads", Store().settings.n_threads)
    out = {"load_s": round(time.perf_counter() - t0, 3), "n_threads": threads}
    return out, model


def run_local(spec: dict[str, Any]) -> dict[str, Any]:
    from slmkit.bench import summary_method
    from slmkit.catalog.memory import own_peak_rss_mb
    from slmkit.evaluate.runner import evaluate

    summary = summary_method(spec["model"])
    if summary:  # a summary method: timed per article, no separate load or decode speed
        method, lead_k, writer = summary
        result: dict[str, Any] = {"load_s": None}
        result["task_result"] = evaluate(
            spec["task"],
            model=writer,
            method=method,
            limit=spec["limit"],
            lead_k=lead_k,
            n_ctx=spec["n_ctx"],
        )
        result["peak_rss_mb"] = round(own_peak_rss_mb(), 1)
        return result
    result, model = _load_timed(spec["model"], spec["n_ctx"])
    if model is not None:
        try:
            result["speed"] = _speed_local(model, spec["repeat"])
        finally:
            model.close()
    if spec["task"] in ("bias", "bias-gen"):  # bench.BIAS_TASKS
        from slmkit.evaluate.runner import evaluate_bias

        gen = spec["task"] == "bias-gen"
        result["task_result"] = evaluate_bias(spec["model"], generator=gen)
    elif spec["task"].startswith("qmsum_qa"):
        from slmkit.bench import QA_TASKS
        from slmkit.evaluate.kbqa import evaluate_qmsum_qa

        method, widen = QA_TASKS[spec["task"]]
        result["task_result"] = evaluate_qmsum_qa(
            model=spec["model"],
            method=method,  # type: ignore[arg-type]
            widen=widen,
            limit=spec["limit"],
            n_ctx=spec["n_ctx"],
        )
    else:
        result["task_result"] = evaluate(
            spec["task"], model=spec["model"], limit=spec["limit"], n_ctx=spec["n_ctx"]
        )
    result["peak_rss_mb"] = round(own_peak_rss_mb(), 1)
    return result


def run_endpoint(spec: dict[str, Any]) -> dict[str, Any]:
    from slmkit.evaluate.runner import evaluate_endpoint
    from slmkit.tasks.endpoint import Endpoint

    ep = Endpoint.parse(spec["model"], timeout=spec["timeout"])
    runs = [
        ep.timed_chat(SPEED_PROMPTS[i % len(SPEED_PROMPTS)], SPEED_TOKENS)
        for i in range(spec["repeat"] + 1)
    ][1:]
    return {
        "load_s": None,
        "speed": speed_stats(runs),
        "task_result": evaluate_endpoint(ep, spec["task"], spec["limit"]),
        "peak_rss_mb": None,
    }


def main(argv: list[str]) -> int:
    from slmkit import offline

    if offline.wanted():  # a cell is as offline as the `slm bench` that started it
        offline.enable()
    spec = json.loads(argv[1])
    if spec.get("cpus"):
        os.sched_setaffinity(0, spec["cpus"])
    try:
        runner = run_endpoint if spec.get("endpoint") else run_local
        result = {"status": "ok", **runner(spec)}
    except Exception as exc:  # reported as this cell's failure; the matrix goes on
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
