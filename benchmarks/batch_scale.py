"""Batch classification over 10,000+ texts: the local engine vs Ray with 2 workers, and a
paper estimate for 10 million texts on N workers.

    python benchmarks/batch_scale.py [--rows 10000] [--model ft-sst2] [--batch-size 64]

Input: the first --rows texts of SST-2's train split (../shared/data). Runs, in one script:
(1) `slm batch classify` locally (2 threads), (2) the same with `--ray --workers 2
--cpus-per-worker 1`, (3) one Ray worker alone, (4) an empty Ray map over the same batches
(Ray's own per-batch cost). Each job is a fresh `slm batch` process; memory is the machine's
used memory (MemTotal - MemAvailable) at its peak during the job, less before it: every
process the job starts (Ray's raylet, GCS and workers included). The two outputs are
compared row by row. Then: per-worker throughput and per-batch overhead give
wall(10M, N) = 10M / (N x per-worker rate) + batches / N x overhead, and its cost at
--price-cpu-hour per worker CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from slmkit.catalog.memory import meminfo_bytes
from slmkit.tasks.data import dataset_file


def used_mb() -> float:
    return ((meminfo_bytes("MemTotal") or 0) - (meminfo_bytes("MemAvailable") or 0)) / 2**20


def run_job(args: list[str]) -> dict:  # type: ignore[type-arg]
    """One `slm batch` process: its JSON summary, wall time, and peak added memory."""
    base, peak, stop = used_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], used_mb())
            time.sleep(0.1)

    t = threading.Thread(target=sample)
    t.start()
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "slmkit", "batch", *args, "--json"], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    stop.set()
    t.join()
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    res = json.loads(done.stdout.strip().splitlines()[-1])
    return {**res, "wall_s": round(wall, 1), "peak_added_mb": round(peak[0] - base)}


def ray_overhead(n_rows: int, batch_size: int) -> float:
    """Seconds per batch of an identity map_batches on 2 actors (Ray's own cost)."""
    import ray

    class Identity:
        def __call__(self, batch: dict) -> dict:  # type: ignore[type-arg]
            return batch

    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        items = [{"id": i, "text": "x" * 50} for i in range(n_rows)]
        ds = ray.data.from_items(items, override_num_blocks=-(-n_rows // batch_size))
        ds = ds.map_batches(
            Identity,
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=2),
            num_cpus=1,
        )
        t0 = time.perf_counter()
        n = sum(len(b["id"]) for b in ds.iter_batches(batch_size=None))
        assert n == n_rows
        return (time.perf_counter() - t0) / (-(-n_rows // batch_size)) * 2  # per actor-batch
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--model", default="ft-sst2")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--price-cpu-hour", type=float, default=0.04)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="slm-batch-bench-"))
    src = tmp / "in.jsonl"
    lines = dataset_file("sst2", "train").read_text().splitlines()[: args.rows]
    src.write_text(
        "".join(
            json.dumps({"id": i, "text": json.loads(x)["text"]}) + "\n" for i, x in enumerate(lines)
        )
    )
    common = ["classify", str(src)]
    opts = ["--model", args.model, "--batch-size", str(args.batch_size)]
    local = run_job([*common, str(tmp / "local.jsonl"), *opts])
    on_ray = run_job(
        [
            *common,
            str(tmp / "ray.jsonl"),
            *opts,
            "--ray",
            "--workers",
            "2",
            "--cpus-per-worker",
            "1",
        ]
    )
    one = run_job(
        [
            *common,
            str(tmp / "one.jsonl"),
            *opts,
            "--ray",
            "--workers",
            "1",
            "--cpus-per-worker",
            "1",
        ]
    )
    a = {json.loads(x)["id"]: json.loads(x)["label"] for x in (tmp / "local.jsonl").open()}
    b = {json.loads(x)["id"]: json.loads(x)["label"] for x in (tmp / "ray.jsonl").open()}
    same = sum(a[k] == b.get(k) for k in a)
    overhead = ray_overhead(args.rows, args.batch_size)
    print(
        f"{args.rows} SST-2 texts, model {args.model}, batch size {args.batch_size}, "
        f"{os.cpu_count()} cores"
    )
    for name, r in (
        ("local (2 threads)", local),
        ("Ray, 2 workers x 1 CPU", on_ray),
        ("Ray, 1 worker x 1 CPU", one),
    ):
        print(
            f"  {name:24s} wall {r['wall_s']:7.1f} s (job {r['seconds']:7.1f} s)  "
            f"{r['items_per_s']:7.1f} items/s  peak memory added {r['peak_added_mb']:5d} MB"
        )
    print(f"  same labels local vs Ray: {same}/{len(a)}; rows in Ray output: {len(b)}")
    rate = one["items_per_s"]
    print(f"  Ray's own cost per batch (identity map): {1000 * overhead:.1f} ms")
    n = 10_000_000
    batches = n / args.batch_size
    for workers in (2, 16, 64, 256):
        wall = n / (workers * rate) + batches / workers * overhead
        cost = wall / 3600 * workers * args.price_cpu_hour
        print(
            f"  10M texts on {workers:3d} one-CPU workers: ~{wall / 3600:6.2f} h, "
            f"~${cost:,.2f} at ${args.price_cpu_hour}/CPU-hour"
        )


if __name__ == "__main__":
    main()
