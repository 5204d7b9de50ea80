"""`slm deploy kuberay`: RayJob (a batch job) and RayService (serving) manifests for KubeRay
(`apiVersion: ray.io/v1`), with CPU and memory requests derived from the model's memory
estimate. Written as plain dicts and dumped as YAML: the field names and shapes follow
KubeRay's API reference (ray.io/v1 RayJob, RayService, RayClusterSpec); the tests check the
output against a JSON Schema of those fields (tests/schemas/kuberay_v1.json).
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from slmkit.catalog.memory import estimate_ram_bytes
from slmkit.catalog.store import Store
from slmkit.errors import InputError

# An allowance for a Ray worker process beside the model: idle Ray actors showed ~210 MB RSS
# here, and slmkit's imports, onnxruntime/llama.cpp buffers and the batch come on top.
RAY_OVERHEAD_MIB = 768


@dataclass
class Deployment:
    """What the manifests run: the model, the image holding slmkit[ray], and the sizes."""

    model: str
    image: str
    name: str = "slmkit"
    ray_version: str = "2.60.0"
    workers: int = 2  # RayJob worker pods (one batch actor each)
    cpus_per_worker: int = 2
    replicas: int = 1  # RayService: replicas (and worker pods) to start with
    max_replicas: int = 4
    n_ctx: int = 4096
    parallel: int = 8  # sequences one replica decodes together


def memory_mib(store: Store, model: str, n_ctx: int) -> int:
    """The model's estimated RSS plus a Ray worker's own, rounded up to 256 MiB."""
    entry, _ = store.require(model)
    est = estimate_ram_bytes(entry, n_ctx)
    if est is None:
        path = store.path(model)
        if path is None:
            raise InputError(f"no memory estimate for {model!r}: pull it first")
        est = int(path.stat().st_size * 1.5)
    return int(math.ceil((est / 2**20 + RAY_OVERHEAD_MIB) / 256) * 256)


def _container(name: str, image: str, cpus: int, mem: int, env: dict[str, str]) -> dict:
    quantity = {"cpu": str(cpus), "memory": f"{mem}Mi"}
    return {
        "name": name,
        "image": image,
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"requests": dict(quantity), "limits": dict(quantity)},
    }


def cluster_spec(d: Deployment, mem: int, workers: int, max_workers: int, env: dict) -> dict:
    """A RayClusterSpec: a head that schedules nothing heavy, one worker group."""
    head_env = {k: v for k, v in env.items() if k.startswith("SLMKIT_")}
    head = _container("ray-head", d.image, 1, 2048, head_env)
    return {
        "rayVersion": d.ray_version,
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0"},  # work runs on workers, never the head
            "template": {"spec": {"containers": [head]}},
        },
        "workerGroupSpecs": [
            {
                "groupName": "slmkit-workers",
                "replicas": workers,
                "minReplicas": workers,
                "maxReplicas": max_workers,
                "rayStartParams": {},
                "template": {
                    "spec": {
                        "containers": [
                            _container("ray-worker", d.image, d.cpus_per_worker, mem, env)
                        ]
                    }
                },
            }
        ],
    }


def rayjob(
    d: Deployment, store: Store, task: str, input_uri: str, output: str, extra: list[str]
) -> dict:
    """A RayJob that runs `slm batch TASK INPUT OUTPUT --ray auto` on its own cluster and
    deletes the cluster when the job ends."""
    mem = memory_mib(store, d.model, d.n_ctx)
    cmd = ["slm", "batch", task, input_uri, output, "--model", d.model, *extra]
    cmd += ["--ray", "auto", "--workers", str(d.workers)]
    cmd += ["--cpus-per-worker", str(d.cpus_per_worker)]
    env = {"SLMKIT_N_THREADS": str(d.cpus_per_worker), "SLMKIT_N_CTX": str(d.n_ctx)}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": f"{d.name}-batch", "labels": {"app.kubernetes.io/name": d.name}},
        "spec": {
            "entrypoint": shlex.join(cmd),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 600,
            "backoffLimit": 2,
            "rayClusterSpec": cluster_spec(d, mem, d.workers, d.workers, env),
        },
    }


def rayservice(d: Deployment, store: Store) -> dict:
    """A RayService running slmkit's app (slmkit.scale.ray_app:app) with autoscaling."""
    import yaml

    from slmkit.catalog.memory import served_cells

    # every cell `slm serve` may allocate: the model's context, the engine's and its lanes
    mem = memory_mib(store, d.model, served_cells(d.n_ctx, per_seq=True))
    env = {
        "SLMKIT_SERVE_MODELS": f'["{d.model}"]',
        "SLMKIT_SERVE_PARALLEL": str(d.parallel),
        "SLMKIT_SERVE_N_CTX": str(d.n_ctx),
        "SLMKIT_N_THREADS": str(d.cpus_per_worker),
        "SLMKIT_RAY_REPLICAS": str(d.replicas),
        "SLMKIT_RAY_MAX_REPLICAS": str(d.max_replicas),
    }
    serve_config = {
        "applications": [
            {
                "name": "slmkit",
                "import_path": "slmkit.scale.ray_app:app",
                "route_prefix": "/",
                "runtime_env": {"env_vars": env},
            }
        ]
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": d.name, "labels": {"app.kubernetes.io/name": d.name}},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config, sort_keys=False),
            "rayClusterConfig": cluster_spec(d, mem, d.replicas, d.max_replicas, env),
        },
    }


def write(out: Path, manifests: dict[str, dict]) -> list[Path]:
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in manifests.items():
        path = out / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(path)
    return paths
