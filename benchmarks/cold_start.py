"""Cold start and memory of `slm run`: spawn to first streamed byte, and peak RSS.

Run: .venv/bin/python benchmarks/cold_start.py [--model ID] [--repeat 7]

Each run is a new process (`slm run MODEL "What is the capital of France?" --temperature 0`).
A bare `python -c pass` is timed in the same loop as a reference for machine load.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import slmkit

SLM = str(Path(sys.executable).parent / "slm")


def first_byte_s(cmd: list[str]) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    t1 = time.perf_counter()
    rest = proc.stdout.read()
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed with {proc.returncode}")
    return t1 - t0, time.perf_counter() - t0, (first + rest).decode(errors="replace")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=slmkit.DEFAULT_MODEL)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    slmkit.Store().pull(args.model)
    run = [SLM, "run", args.model, "What is the capital of France?", "--temperature", "0"]
    ref = [sys.executable, "-c", "print('x')"]
    firsts, totals, refs = [], [], []
    for _ in range(args.repeat):
        f, t, text = first_byte_s(run)
        firsts.append(f)
        totals.append(t)
        refs.append(first_byte_s(ref)[0])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"answer: {text.strip()[:80]!r}")
    print(
        f"slm run {args.model}: first token after {statistics.median(firsts):.3f} s "
        f"(median of {args.repeat}; min {min(firsts):.3f}, max {max(firsts):.3f}), "
        f"whole answer {statistics.median(totals):.3f} s"
    )
    print(f"reference `python -c print`: {statistics.median(refs):.3f} s")
    print(f"peak RSS of the largest child: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
