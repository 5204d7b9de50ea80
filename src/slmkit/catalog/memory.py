"""Memory, in one place: what a model should need (weights + KV cache + runtime overhead; a
served model's every KV cell and its draft), what the machine has (/proc/meminfo), and what a
process measured (/proc/PID/status). Used by `slm info`/`slm pull`'s fit line (store),
`slm serve`'s memory budget (provider), `slm recommend`, `slm bench` and the KubeRay requests.
"""

from __future__ import annotations

import resource
from pathlib import Path

from slmkit.catalog.entries import ModelEntry

RUNTIME_OVERHEAD_BYTES = 120 * 2**20
MODEL_CTX = 4096  # the most cells a served model's own context (and one request) gets
LONG_SEQ = 2  # requests too long for a per-sequence stream decoded together (the long lane)
DRAFT_CTX = 512  # a draft model's own context (unused: it drafts in the engine's)


def estimate_ram_bytes(entry: ModelEntry, n_ctx: int) -> int | None:
    """Rough resident memory when loaded with n_ctx: weights + f16 KV cache + runtime overhead.

    The overhead constant comes from measuring `slm run` peak RSS (docs/models.md).
    """
    if entry.size_bytes is None:
        return None
    if entry.kind == "encoder" or entry.arch is None:
        return int(entry.size_bytes * 1.2) + 150 * 2**20
    a = entry.arch
    kv = 2 * a.n_layer * n_ctx * a.n_head_kv * a.head_dim * 2
    return entry.size_bytes + kv + RUNTIME_OVERHEAD_BYTES


def meminfo_bytes(field: str) -> int | None:
    """A /proc/meminfo figure (MemTotal, MemAvailable...) in bytes, None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_ram_bytes() -> int | None:
    """Memory the system can give a new process now (MemAvailable), None where unknown."""
    return meminfo_bytes("MemAvailable")


def fit_message(entry: ModelEntry, n_ctx: int, ram_bytes: int | None) -> tuple[bool | None, str]:
    """Whether the model should fit in `ram_bytes`, and a line saying so with the figures."""
    need = estimate_ram_bytes(entry, n_ctx)
    if need is None or ram_bytes is None:
        return None, f"{entry.id}: memory need or free memory unknown"
    gb = 2**30
    fits = need <= ram_bytes
    verdict = "fits" if fits else "does NOT fit"
    return fits, (
        f"{entry.id} needs about {need / gb:.2f} GB at n_ctx {n_ctx} (estimate); "
        f"{ram_bytes / gb:.1f} GB available: {verdict}"
    )


def served_cells(n_ctx: int, per_seq: bool) -> int:
    """KV cells a served model may allocate with `slm serve --n-ctx n_ctx`: its own context,
    the engine's n_ctx and, with per-sequence streams, the engine's lanes for seeded requests
    (one sequence) and for requests too long for a stream (LONG_SEQ sequences), each of up to
    the model's context; those lanes are made at their first request."""
    model_ctx = min(n_ctx, MODEL_CTX)
    return model_ctx + n_ctx + ((1 + LONG_SEQ) * model_ctx if per_seq else 0)


def served_bytes(
    entry: ModelEntry, n_ctx: int, per_seq: bool, draft: ModelEntry | None, file: Path | None
) -> int:
    """Estimated RSS of a served model: weights and every KV cell it may allocate, plus its
    draft's weights, own context and the engine's draft context (docs/models.md); without
    the figures, 1.5x the file."""
    est = estimate_ram_bytes(entry, served_cells(n_ctx, per_seq))
    if est is not None and draft is not None:
        est += estimate_ram_bytes(draft, DRAFT_CTX + min(n_ctx, MODEL_CTX)) or 0
    if est is None:
        est = int(file.stat().st_size * 1.5) if file else 0
    return est


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(field: str, pid: int | str = "self") -> float | None:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM...) in MiB, None where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def own_peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM): getrusage's figure would carry the peak of the
    process that started it across fork and exec."""
    hwm = proc_status_mb("VmHWM")
    return hwm if hwm is not None else peak_rss_mb()
