"""`slm batch --ray`: the task on a Ray cluster through Ray Data.

The input rows not yet in the output become a Ray Dataset; `map_batches` runs them through
`TaskActor`, a pool of `workers` actors that each load the model once and call the same task
code as the CLI (tasks/registry.py). The driver consumes the results as they stream back and
appends each batch to the output (scale.OutputFile), so a rerun resumes and an id never
lands twice. Ray Data restarts a dead actor and runs its batch again (its defaults:
max_restarts=-1, max_task_retries=-1), so a killed worker loses nothing
(tests/test_scale.py kills one mid-job).

Ray is an optional dependency (`pip install 'slmkit[ray]'`); nothing else imports it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from slmkit.errors import InputError
from slmkit.scale import BatchJob, OutputFile, Progress, RowId, pending, summary


class TaskActor:
    """One Ray worker: the task built once, then called per batch of rows."""

    def __init__(self, task: str, options: dict[str, Any]) -> None:
        from slmkit import offline
        from slmkit.tasks.registry import make_task

        if offline.wanted():  # as offline as the `slm batch` that started it
            offline.enable()
        self.fn = make_task(task, options)
        self.pid = os.getpid()
        pid_dir = os.environ.get("SLMKIT_BATCH_PID_DIR")
        if pid_dir:  # tests find the workers to kill here
            with open(os.path.join(pid_dir, f"{self.pid}.pid"), "w") as fh:
                fh.write(str(self.pid))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = [str(t) for t in batch["text"]]
        results = self.fn(texts)
        return {"id": batch["id"], "result": [json.dumps(r) for r in results]}


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise InputError(
            "--ray needs Ray, an optional extra: pip install 'slmkit[ray]' "
            "(or run without --ray: the same job on this machine)"
        ) from e
    return ray


def connect(ray: Any, address: str, job: BatchJob) -> bool:
    """Start a Ray on this machine ("local", loopback only) or join a cluster. Returns
    whether this call started Ray (and so should shut it down)."""
    if ray.is_initialized():
        return False
    env = {"SLMKIT_N_THREADS": str(max(1, int(job.cpus_per_worker)))}
    for var in ("SLMKIT_HOME", "SLMKIT_OFFLINE", "SLMKIT_BATCH_PID_DIR"):
        if var in os.environ:
            env[var] = os.environ[var]
    common = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
    if address == "local":
        cpus = max(1, int(job.workers * job.cpus_per_worker), os.cpu_count() or 1)
        ray.init(num_cpus=cpus, _node_ip_address="127.0.0.1", include_dashboard=False, **common)
    else:
        from slmkit import offline

        offline.disable()  # the user asked for this cluster: the driver may reach it
        ray.init(address=address, **common)
    return True


def run_ray(job: BatchJob, address: str, progress: Progress | None = None) -> dict[str, Any]:
    ray = import_ray()
    out = OutputFile(job.output)
    started = False
    try:
        todo = pending(job, out)
        skipped = len(out.done)
        t0 = time.perf_counter()
        written = 0
        if todo:
            started = connect(ray, address, job)
            written = _stream(ray, job, todo, out, progress)
        return summary(job, written, skipped, time.perf_counter() - t0, f"ray ({address})")
    finally:
        out.close()
        if started:
            ray.shutdown()


def _stream(
    ray: Any,
    job: BatchJob,
    todo: list[tuple[RowId, str]],
    out: OutputFile,
    progress: Progress | None,
) -> int:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI draws its own
    blocks = max(job.workers, -(-len(todo) // max(job.batch_size, 1)))
    ds = ray.data.from_items(
        [{"id": rid, "text": text} for rid, text in todo], override_num_blocks=min(blocks, 1000)
    )
    ds = ds.map_batches(
        TaskActor,
        fn_constructor_kwargs={"task": job.task, "options": job.options},
        batch_size=job.batch_size,
        compute=ray.data.ActorPoolStrategy(size=job.workers),
        num_cpus=job.cpus_per_worker,
    )  # Ray Data's actor defaults: a dead worker restarts and its batch runs again
    written = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        ids = [i.item() if hasattr(i, "item") else i for i in batch["id"]]  # numpy -> Python
        written += out.write(ids, [json.loads(r) for r in batch["result"]])
        if progress:
            progress(len(ids), len(todo))
    return written
