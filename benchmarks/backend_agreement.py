"""llama.cpp vs the transformers backend on SmolLM2's GGUF: greedy text and log-probabilities.

Run: .venv/bin/python benchmarks/backend_agreement.py

Prints whether 16 greedy tokens match on each prompt, and the largest per-token
log-probability gap over a few continuations (tests/test_transformers_backend.py asserts the
same with a tolerance of 0.25 nats).
"""

from __future__ import annotations

import slmkit

PROMPTS = ["Write a haiku about the sea.", "List three uses of Python.", "Explain what a CPU does."]
PAIRS = [("The capital of France is", c) for c in (" Paris", " London", " a city", " the")]


def main() -> None:
    a = slmkit.load(slmkit.DEFAULT_MODEL)
    b = slmkit.load(slmkit.DEFAULT_MODEL, backend="transformers")
    for p in PROMPTS:
        ta = a.chat(p, max_tokens=16, temperature=0).text
        tb = b.chat(p, max_tokens=16, temperature=0).text
        print(f"greedy 16 tokens match: {ta == tb}  {p!r}")
    gap = 0.0
    for ctx, cont in PAIRS:
        la, lb = a.loglikelihood(ctx, cont), b.loglikelihood(ctx, cont)
        pairs = zip(la.token_logprobs, lb.token_logprobs, strict=True)
        gap = max(gap, *(abs(x - y) for x, y in pairs))
    print(f"largest per-token log-probability gap: {gap:.3f} nats over {len(PAIRS)} continuations")


if __name__ == "__main__":
    main()
