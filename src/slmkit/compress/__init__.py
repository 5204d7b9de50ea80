"""`slmkit.compress.quantize`: a smaller copy of a store model, behind an accuracy guard.

GGUF language models go through llama.cpp's quantizer; fine-tuned encoder classifiers become
int8 ONNX (or fp32 ONNX, or dynamic-int8 PyTorch). With a guard task, source and result are
measured (each in a fresh process) and a result that loses more than `max_drop` points is
refused: nothing is registered.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.catalog.entries import LocalSource, ModelEntry
from slmkit.catalog.store import Store
from slmkit.errors import GuardRefusedError, InputError, InvalidOptionsError
from slmkit.runtime.llamacpp_quantize import FLOAT_SOURCES, GGUF_TYPES

__all__ = ["QuantizeResult", "check_guard", "quantize"]


@dataclass
class QuantizeResult:
    model_id: str
    path: Path
    report: dict[str, Any]


def _kind(entry: ModelEntry) -> str:
    if entry.kind == "classifier":
        return "encoder"
    if entry.format == "gguf":
        return "gguf"
    raise InputError(f"{entry.id} ({entry.kind}, {entry.format}) cannot be quantized here")


def check_type(entry: ModelEntry, qtype: str, allow_requantize: bool) -> None:
    """InvalidOptionsError for a type this source cannot produce; InputError for a quantized
    GGUF source unless re-quantizing was asked for."""
    from slmkit.compress.encoder import ENCODER_TYPES

    kind = _kind(entry)
    allowed = ENCODER_TYPES if kind == "encoder" else GGUF_TYPES
    if qtype not in allowed:
        raise InvalidOptionsError(
            f"{entry.id} is a {kind} model: --type must be one of {', '.join(allowed)}"
        )
    if kind == "encoder" and entry.format != "safetensors":
        raise InputError(f"{entry.id} is already compressed ({entry.quantization})")
    if kind == "gguf" and entry.quantization.upper() not in FLOAT_SOURCES and not allow_requantize:
        raise InputError(
            f"{entry.id} is already quantized ({entry.quantization}): quantizing it again "
            "compounds the rounding error of both steps. Start from an F16/F32 GGUF, or pass "
            "--allow-requantize to do it anyway"
        )


def check_guard(entry: ModelEntry, task: str) -> None:
    """Fail before any work if the guard task cannot measure this model."""
    from slmkit.evaluate.runner import task_spec
    from slmkit.tasks.data import ClassificationTask

    if task == "extract_sms":
        if entry.kind == "classifier":
            raise InputError("extract_sms needs a language model, not a classifier")
        return
    spec = task_spec(task)
    if entry.kind == "classifier":
        if not isinstance(spec, ClassificationTask):
            raise InputError(f"{task} is not a classification task")
        if set(spec.labels) != set(entry.labels):
            from slmkit.errors import LabelError

            raise LabelError(
                f"guard task {task} has labels {', '.join(spec.labels[:6])}; {entry.id} was "
                f"trained on {', '.join(entry.labels[:6])}"
            )


def quantize(
    model_id: str,
    qtype: str,
    out: str,
    *,
    guard: str | None = None,
    max_drop: float = 1.0,
    limit: int = 200,
    allow_requantize: bool = False,
    force: bool = False,
    store: Store | None = None,
) -> QuantizeResult:
    """Quantize, measure against the guard task if given, and register as `out`."""
    store = store or Store()
    store.check_new_id(out, force=force)
    entry, path = store.require(model_id)
    check_type(entry, qtype, allow_requantize)
    if guard:
        check_guard(entry, guard)
    staging = store.staging_dir(out)
    try:
        filename = _build(entry, path, staging, qtype, allow_requantize, store)
        report = _report(entry, path, staging, filename, guard, max_drop, limit)
        new = _entry(entry, out, qtype, staging / filename, report, store.model_dir(out))
        final = store.register_dir(new, staging, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return QuantizeResult(out, final / filename, report)


def _build(
    entry: ModelEntry, path: Path, staging: Path, qtype: str, requant: bool, store: Store
) -> str:
    if _kind(entry) == "encoder":
        from slmkit.compress.encoder import compress_encoder

        return compress_encoder(path.parent, staging, qtype)
    from slmkit.runtime.llamacpp_quantize import quantize_gguf

    name = f"{Path(entry.filename).stem.split('.')[0]}.{qtype.upper()}.gguf"
    quantize_gguf(
        path, staging / name, qtype, n_threads=store.settings.n_threads, allow_requantize=requant
    )
    return name


def _report(
    entry: ModelEntry,
    path: Path,
    staging: Path,
    filename: str,
    guard: str | None,
    max_drop: float,
    limit: int,
) -> dict[str, Any]:
    from slmkit.compress.measure import measure_in_child

    src = path.parent if _kind(entry) == "encoder" else path
    dst = staging if _kind(entry) == "encoder" else staging / filename
    report: dict[str, Any] = {
        "source": {"model": entry.id, "size_bytes": path.stat().st_size},
        "result": {"size_bytes": (staging / filename).stat().st_size},
        "guard": guard,
        "max_drop": max_drop,
    }
    if not guard:
        return report
    kind = _kind(entry)
    report["source"] |= measure_in_child(kind, src, guard, limit)
    report["result"] |= measure_in_child(kind, dst, guard, limit)
    drop = report["source"]["score"] - report["result"]["score"]
    report["drop_points"] = round(drop, 2)
    if drop > max_drop:
        raise GuardRefusedError(
            f"refused: {guard} score fell {drop:.2f} points "
            f"({report['source']['score']:.2f} -> {report['result']['score']:.2f}), "
            f"more than --max-drop {max_drop}; nothing was registered",
            report,
        )
    return report


def _entry(
    src: ModelEntry, out: str, qtype: str, file: Path, report: dict[str, Any], final_dir: Path
) -> ModelEntry:
    fmt = "onnx" if file.suffix == ".onnx" else src.format
    lineage = {
        "base": src.id,
        "method": f"quantize-{qtype}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "guard": report,
        "parent": src.lineage,
    }
    return src.model_copy(
        update={
            "id": out,
            "format": fmt,
            "quantization": qtype.upper(),
            "filename": file.name,
            "size_bytes": file.stat().st_size,
            "sha256": None,
            "sources": (LocalSource(path=str(final_dir / file.name)),),
            "description": f"{src.id} quantized to {qtype}.",
            "imported": True,
            "lineage": lineage,
        }
    )
