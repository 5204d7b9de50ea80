"""Single-stream decode speed: slmkit vs llama.cpp's own eval timing vs llama-cpp-python.

Run: .venv/bin/python benchmarks/decode_speed.py [--model ID] [--rounds 5] [--tokens 200]

All three figures come from the same process, interleaved round by round, so other load on
the machine affects them alike:
- slmkit: wall-clock tokens/s from the first to the last generated token, as a user of
  `Model.stream` sees it (sampling, detokenization and stop checks included);
- llama.cpp: n_eval / t_eval from `llama_perf_context` of slmkit's context in that same run
  (the C++ library's own timing of its single-token decodes);
- llama-cpp-python: `Llama.create_completion(stream=True)` on the same prompt, wall clock
  from first to last streamed chunk (one chunk per token for this English output).
Greedy decoding, so all runs produce the same tokens.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import llama_cpp

import slmkit

MESSAGES = [{"role": "user", "content": "Write a long story about a dragon who learns to read."}]


def run_slmkit(model: slmkit.Model, n: int) -> tuple[float, float, int, str]:
    model.backend.clear_cache()  # type: ignore[attr-defined]
    model.backend.reset_perf()  # type: ignore[attr-defined]
    chunks = list(model.stream(MESSAGES, temperature=0, max_tokens=n))
    stats = chunks[-1].stats
    assert stats is not None
    perf = model.backend.perf()  # type: ignore[attr-defined]
    # The last prompt token is decoded alone (to get fresh logits) and lands in n_eval too.
    own = perf["n_eval"] / (perf["t_eval_ms"] / 1000)
    return stats.tokens_per_s, own, stats.completion_tokens, "".join(c.text for c in chunks)


def run_high_level(llm: llama_cpp.Llama, prompt: str, n: int) -> tuple[float, int, str]:
    llm.reset()
    times: list[float] = []
    parts: list[str] = []
    for chunk in llm.create_completion(prompt, max_tokens=n, temperature=0.0, stream=True):
        times.append(time.perf_counter())
        parts.append(chunk["choices"][0]["text"])
    return (len(times) - 1) / (times[-1] - times[0]), len(times), "".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=slmkit.DEFAULT_MODEL)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=200)
    args = ap.parse_args()
    model = slmkit.load(args.model, n_ctx=2048, pull=True)
    prompt = model.format_chat(MESSAGES)
    llm = llama_cpp.Llama(
        model_path=str(model.path),
        n_ctx=2048,
        n_threads=model.backend.n_threads,  # type: ignore[attr-defined]
        n_threads_batch=model.backend.n_threads,  # type: ignore[attr-defined]
        verbose=False,
    )
    ours, own, hl = [], [], []
    for r in range(args.rounds):
        s_rate, c_rate, n_tok, s_text = run_slmkit(model, args.tokens)
        h_rate, h_n, h_text = run_high_level(llm, prompt, args.tokens)
        ours.append(s_rate)
        own.append(c_rate)
        hl.append(h_rate)
        same = "same text" if s_text.strip() == h_text.strip() else "TEXT DIFFERS"
        print(
            f"round {r + 1}: slmkit {s_rate:6.1f} tok/s ({n_tok} tok) | llama.cpp eval "
            f"{c_rate:6.1f} | llama-cpp-python stream {h_rate:6.1f} ({h_n} chunks, {same})"
        )
    m_ours, m_own, m_hl = (statistics.median(x) for x in (ours, own, hl))
    print(
        f"\nmodel {model.id}, {platform.processor() or platform.machine()}, "
        f"threads {model.backend.n_threads}"
    )  # type: ignore[attr-defined]
    print(f"median slmkit                   {m_ours:6.1f} tok/s")
    print(f"median llama.cpp own eval rate  {m_own:6.1f} tok/s  slmkit/own = {m_ours / m_own:.3f}")
    print(f"median llama-cpp-python stream  {m_hl:6.1f} tok/s  slmkit/hl  = {m_ours / m_hl:.3f}")


if __name__ == "__main__":
    main()
