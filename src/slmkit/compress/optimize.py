"""`slm optimize`: the variant of a GGUF model that this CPU runs fastest within a quality bound.

Candidates are written from the model's own file (requantized when that file is already
quantized: the only weights there are, and the report says so), then measured side by side on
this machine:

- speed: prefill tokens/s of a `prompt_tokens` prompt and decode tokens/s after it, every file
  open in one process, rounds interleaved, medians;
- quality: mean and p99 KL divergence of the next-token distribution against the source file,
  and top-1 agreement, over a fixed text sample (CNN/DailyMail articles, `kld_tokens` scored
  positions), and the accuracy guard on a task (`guard`, `max_drop` points).

The rule, in words: among the candidates whose mean KLD is at most `kld_max`, whose decode is at
least `min_decode` x the source's and whose task score drops at most `max_drop` points, take the
one with the fastest prefill; if none qualifies, or none is faster than the source, nothing is
registered. For the chosen file, flash attention on/off and the thread count are then measured
the same way and the pair that serves a `prompt_tokens` prompt plus a 128-token answer soonest
is stored with it, with the measured seconds of one decode of 1..16 rows (what speculative
verification sizes its drafts from). The result is registered under its own id, with its
figures as lineage, and `slm run/serve/eval MODEL` load it from then on; `MODEL@source` loads
the original file.

`runtime_only` skips the formats: the source's own file (hard-linked, not copied) is registered
with the flash attention / threads pair measured fastest, when that beats the defaults by
`min_speedup`; what a user wants when no format qualifies but the runtime choice pays.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import shutil
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.catalog.entries import LocalSource, ModelEntry
from slmkit.catalog.store import SOURCE_SUFFIX, Store
from slmkit.errors import GuardRefusedError, InputError, InvalidOptionsError

__all__ = ["RECIPES", "OptimizeConfig", "OptimizeResult", "Recipe", "optimize"]

FLOAT_TYPES = ("F32", "F16", "BF16", "ALL_F32")
ANSWER_TOKENS = 128  # the answer length the runtime settings are chosen for
# below 5% a runtime change is within the run-to-run spread of a shared machine (Gemma-3-270M,
# flash attention off: 1.07x sooner in one run, 0.96x an hour later; docs/benchmarks.md)
MIN_RUNTIME_GAIN = 1.05


@dataclass(frozen=True)
class Recipe:
    """One candidate: the main weight type, and the token embedding / output types if set."""

    name: str
    qtype: str
    embeddings: str | None = None
    output: str | None = None


RECIPES = (
    Recipe("q8_0", "q8_0"),
    Recipe("q4_0", "q4_0"),
    Recipe("iq4_nl", "iq4_nl"),
    Recipe("q4_0-q8emb", "q4_0", "q8_0", "q8_0"),
    Recipe("iq4_nl-q8emb", "iq4_nl", "q8_0", "q8_0"),
)


@dataclass
class OptimizeConfig:
    kld_max: float = 0.02
    min_decode: float = 0.95
    min_speedup: float = 1.0  # a candidate must beat the source by this on prefill or decode
    guard: str | None = "sst2"
    max_drop: float = 1.0
    limit: int = 200
    kld_tokens: int = 20480
    window: int = 512
    skip: int = 128
    prompt_tokens: int = 512
    decode_tokens: int = 64
    repeats: int = 3
    recipes: tuple[str, ...] = tuple(r.name for r in RECIPES)
    threads: tuple[int, ...] = ()
    out: str | None = None
    force: bool = False
    text: Path | None = None
    runtime_only: bool = False  # keep the source's file; measure and store only how it runs


@dataclass
class OptimizeResult:
    model_id: str
    source: str
    path: Path
    report: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(label: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def check_source(store: Store, model_id: str) -> tuple[ModelEntry, Path]:
    """The entry and file to optimize; InputError for anything but an installed GGUF decoder
    that is not itself an optimized variant."""
    if model_id.endswith(SOURCE_SUFFIX):
        model_id = model_id.removesuffix(SOURCE_SUFFIX)
    entry, path = store.require(model_id)
    if entry.kind != "decoder" or entry.format != "gguf":
        raise InputError(
            f"{model_id} is a{'n' if entry.kind == 'encoder' else ''} {entry.kind} "
            f"({entry.format}): slm optimize works on GGUF language models"
        )
    if entry.backend != "llamacpp":
        raise InputError(
            f"{model_id} runs on the {entry.backend} backend: slm optimize works on GGUF "
            "language models that llama.cpp runs"
        )
    from slmkit.catalog.gguf_info import check_magic

    check_magic(path)
    if (entry.lineage or {}).get("replaces"):
        raise InputError(
            f"{model_id} is already an optimized variant of {entry.lineage['replaces']}; "  # type: ignore[index]
            "optimize that model instead"
        )
    return entry, path


def check_fits(entry: ModelEntry, cfg: OptimizeConfig) -> None:
    longest = max(cfg.window, cfg.prompt_tokens + cfg.decode_tokens)
    if longest > entry.context_length:
        raise InvalidOptionsError(
            f"a {longest}-token window does not fit {entry.id}'s context of "
            f"{entry.context_length}: lower --window / --prompt-tokens"
        )


def check_config(cfg: OptimizeConfig) -> list[Recipe]:
    known = {r.name: r for r in RECIPES}
    unknown = [name for name in cfg.recipes if name not in known]
    if unknown or not cfg.recipes:
        raise InvalidOptionsError(
            f"unknown candidate {', '.join(unknown) or '(none given)'}; choose from "
            + ", ".join(known)
        )
    if cfg.kld_max <= 0 or cfg.min_decode <= 0:
        raise InvalidOptionsError("--kld-max and --min-decode must be above 0")
    if cfg.skip + 2 > cfg.window or cfg.kld_tokens < 1 or cfg.repeats < 1:
        raise InvalidOptionsError("the KLD window must be longer than its skipped context")
    return [known[name] for name in cfg.recipes]


def sample_windows(source: Path, cfg: OptimizeConfig) -> list[list[int]]:
    """Token windows of `window` tokens over the text sample, enough for `kld_tokens` scored
    positions (each window scores its positions after `skip`)."""
    from slmkit.runtime.llamacpp_measure import tokenize_file

    per = cfg.window - cfg.skip - 1
    need = math.ceil(cfg.kld_tokens / per) * cfg.window
    tokens: list[int] = []
    for text in sample_texts(cfg.text):
        tokens += tokenize_file(source, text)
        if len(tokens) >= need:
            break
    n = len(tokens) // cfg.window
    if n == 0:
        raise InputError(f"the text sample has {len(tokens)} tokens, fewer than one window")
    return [
        tokens[i * cfg.window : (i + 1) * cfg.window] for i in range(min(n, need // cfg.window))
    ]


def sample_texts(path: Path | None) -> Iterator[str]:
    """The KLD text: a user's file (plain text, or JSONL with a text field), else the
    CNN/DailyMail validation articles, in file order (fixed: runs compare)."""
    import json

    from slmkit.tasks.data import dataset_file

    file = path or dataset_file("cnn_dailymail", "validation_1000.jsonl")
    if not file.is_file():
        raise InputError(f"no such text file: {file}")
    if file.suffix != ".jsonl":
        yield file.read_text()
        return
    with file.open() as f:
        for line in f:
            row = json.loads(line)
            yield str(row.get("document") or row.get("text") or row.get("article") or "")


def build_candidates(
    entry: ModelEntry, path: Path, recipes: list[Recipe], folder: Path, n_threads: int
) -> dict[str, Path]:
    from slmkit.runtime.llamacpp_quantize import quantize_gguf

    requant = entry.quantization.upper() not in FLOAT_TYPES
    stem = Path(entry.filename).stem.split(".")[0]
    files = {}
    for r in recipes:
        dst = folder / f"{stem}.{r.name.upper()}.gguf"
        quantize_gguf(
            path,
            dst,
            r.qtype,
            n_threads=n_threads,
            allow_requantize=requant,
            embeddings=r.embeddings,
            output=r.output,
        )
        files[r.name] = dst
    return files


@contextmanager
def opened(files: dict[str, Path], **kw: Any) -> Iterator[dict[str, Any]]:
    from slmkit.runtime.llamacpp_measure import open_gguf

    models: dict[str, Any] = {}
    try:
        for name, p in files.items():
            models[name] = open_gguf(p, **kw)
        yield models
    finally:
        for m in models.values():
            m.close()


def measure_drift(
    files: dict[str, Path],
    windows: list[list[int]],
    cfg: OptimizeConfig,
    threads: int,
    progress: Progress,
) -> dict[str, dict[str, float]]:
    from slmkit.runtime.llamacpp_measure import drift

    with opened(files, n_ctx=cfg.window, n_threads=threads, logits_all=True) as models:
        ref = models.pop("source")
        step = progress("KL divergence against the source", len(windows))
        return drift(ref, models, windows, skip=cfg.skip, progress=step)


def measure_speed(
    files: dict[str, Path],
    prompt: list[int],
    cfg: OptimizeConfig,
    *,
    threads: int,
    flash_attn: bool = True,
    progress: Progress = _no_progress,
) -> dict[str, dict[str, float]]:
    """Medians over interleaved rounds: every file open in this process, one after another."""
    from slmkit.runtime.llamacpp_measure import prefill_decode

    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in files}
    n_ctx = len(prompt) + cfg.decode_tokens + 8
    with opened(files, n_ctx=n_ctx, n_threads=threads, flash_attn=flash_attn) as models:
        step = progress("speed (interleaved rounds)", cfg.repeats * len(models))
        for llm in models.values():  # one warm-up each: page cache, repack, allocations
            prefill_decode(llm, prompt[:64], 4)
        for _ in range(cfg.repeats):
            for name, llm in models.items():
                runs[name].append(prefill_decode(llm, prompt, cfg.decode_tokens))
                step(1)
    return {
        name: {
            "prefill_tps": round(statistics.median(r[0] for r in rs), 1),
            "decode_tps": round(statistics.median(r[1] for r in rs), 1),
        }
        for name, rs in runs.items()
    }


def measure_guard(
    files: dict[str, Path], names: list[str], cfg: OptimizeConfig, progress: Progress
) -> dict[str, float]:
    """Task score (points) of the source and each named candidate, each in a fresh process."""
    from slmkit.compress.measure import measure_in_child

    if not cfg.guard:
        return {}
    step = progress(f"guard task {cfg.guard}", len(names) + 1)
    scores = {}
    for name in ["source", *names]:
        scores[name] = measure_in_child("gguf", files[name], cfg.guard, cfg.limit)["score"]
        step(1)
    return scores


def verdict(row: dict[str, Any], src: dict[str, Any], cfg: OptimizeConfig) -> str | None:
    """Why a candidate is refused, in words; None if it qualifies."""
    if row["kld_mean"] > cfg.kld_max:
        return f"mean KLD {row['kld_mean']:.4f} > {cfg.kld_max}"
    if row["decode_x"] < cfg.min_decode:
        return f"decode {row['decode_x']:.3f}x the source's < {cfg.min_decode}x"
    if cfg.guard and row.get("score") is None:
        return "guard not measured"
    if cfg.guard and src["score"] - row["score"] > cfg.max_drop:
        return f"{cfg.guard} fell {src['score'] - row['score']:.2f} points > {cfg.max_drop}"
    if max(row["prefill_x"], row["decode_x"]) <= cfg.min_speedup:
        return "not faster than the source"
    return None


def table(
    files: dict[str, Path], speed: dict[str, dict[str, float]], drift: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    src = speed["source"]
    rows = []
    for name, file in files.items():
        row: dict[str, Any] = {"candidate": name, "size_bytes": file.stat().st_size}
        row |= speed[name] | drift.get(
            name, {"kld_mean": 0.0, "kld_p99": 0.0, "top1_agreement": 1.0}
        )
        row["prefill_x"] = round(row["prefill_tps"] / src["prefill_tps"], 3)
        row["decode_x"] = round(row["decode_tps"] / src["decode_tps"], 3)
        rows.append(row)
    return rows


def choose(rows: list[dict[str, Any]], cfg: OptimizeConfig) -> dict[str, Any] | None:
    """Mark each candidate chosen/refused (with why) and return the chosen row."""
    src = rows[0]
    ok = []
    for row in rows[1:]:
        row["refused"] = verdict(row, src, cfg)
        if row["refused"] is None:
            ok.append(row)
    best = max(ok, key=lambda r: r["prefill_tps"], default=None)
    for row in rows[1:]:
        row["chosen"] = row is best
        if row["refused"] is None and row is not best:
            row["refused"] = f"qualifies, slower prefill than {best['candidate']}"  # type: ignore[index]
    return best


def tune_runtime(
    file: Path, prompt: list[int], cfg: OptimizeConfig, threads: tuple[int, ...]
) -> dict[str, Any]:
    """Flash attention on/off x thread counts for the chosen file, measured the same way; keep
    the pair that answers a `prompt_tokens` prompt with 128 tokens soonest."""
    trials = []
    for flash in (True, False):
        for n in threads:
            got = measure_speed({"x": file}, prompt, cfg, threads=n, flash_attn=flash)["x"]
            seconds = len(prompt) / got["prefill_tps"] + ANSWER_TOKENS / got["decode_tps"]
            trials.append(
                {"flash_attn": flash, "n_threads": n, **got, "seconds": round(seconds, 3)}
            )
    best = min(trials, key=lambda t: t["seconds"])
    return {
        "chosen": {"flash_attn": best["flash_attn"], "n_threads": best["n_threads"]},
        "trials": trials,
    }


ROWS = tuple(range(1, 17))


def measure_rows(file: Path, tokens: list[int], runtime: dict[str, Any]) -> dict[str, float]:
    """Seconds of one decode of 1..16 rows after 256 tokens of context, with the chosen
    runtime settings: the table speculative verification sizes its drafts from."""
    from slmkit.runtime.llamacpp_measure import open_gguf, row_seconds

    depth = max(0, min(256, len(tokens) - max(ROWS)))
    n_ctx = depth + max(ROWS) + 8
    llm = open_gguf(
        file, n_ctx=n_ctx, n_threads=runtime["n_threads"], flash_attn=runtime["flash_attn"]
    )
    try:
        table = row_seconds(llm, tokens, ROWS, depth=depth, repeats=5)
    finally:
        llm.close()
    return {str(n): round(sec, 6) for n, sec in table.items()}


def thread_options(cfg: OptimizeConfig, default: int) -> tuple[int, ...]:
    if cfg.threads:
        return cfg.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else default
    return tuple(sorted({cores, max(1, cores // 2)}, reverse=True))


def optimize(
    model_id: str,
    cfg: OptimizeConfig | None = None,
    *,
    store: Store | None = None,
    progress: Progress = _no_progress,
) -> OptimizeResult:
    """Build, measure and choose (module docstring); register the chosen file or raise
    GuardRefusedError with the full report when no candidate qualifies."""
    cfg = cfg or OptimizeConfig()
    store = store or Store()
    entry, path = check_source(store, model_id)
    recipes = check_config(cfg)
    check_fits(entry, cfg)
    if cfg.out:
        store.check_new_id(cfg.out, force=cfg.force)
    threads = store.settings.n_threads
    windows = sample_windows(path, cfg)
    prompt = [t for w in windows for t in w][: cfg.prompt_tokens]
    if cfg.runtime_only:
        return tune_source(store, entry, path, cfg, [t for w in windows for t in w])
    staging = store.staging_dir(cfg.out or f"{entry.id}-optimized")
    try:
        built = build_candidates(entry, path, recipes, staging, threads)
        rows = measure_all({"source": path, **built}, windows, prompt, cfg, threads, progress)
        best = choose(rows, cfg)
        report = _report(entry, cfg, rows, best)
        if best is None:
            # The source stays; how it runs best here (flash attention, threads) is still worth
            # knowing, so the report carries the same runtime measurement for it.
            report["runtime"] = tune_runtime(path, prompt, cfg, thread_options(cfg, threads))
            raise GuardRefusedError(
                f"no candidate for {entry.id} qualifies (mean KLD <= {cfg.kld_max}, decode >= "
                f"{cfg.min_decode}x, {cfg.guard or 'no guard'} drop <= {cfg.max_drop}); "
                "nothing was registered" + runtime_hint(report["runtime"], entry, threads),
                report,
            )
        file = built[best["candidate"]]
        report["runtime"] = tune_runtime(file, prompt, cfg, thread_options(cfg, threads))
        chosen = report["runtime"]["chosen"]
        chosen["row_seconds"] = measure_rows(file, [t for w in windows for t in w], chosen)
        for name, file in built.items():
            if name != best["candidate"]:
                file.unlink()
        out = cfg.out or f"{entry.id}-{best['candidate']}"
        new = _entry(entry, out, built[best["candidate"]], report, store.model_dir(out))
        final = store.register_dir(new, staging, force=cfg.force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return OptimizeResult(out, entry.id + SOURCE_SUFFIX, final / new.filename, report)


def default_trial(trials: list[dict[str, Any]], entry: ModelEntry, threads: int) -> dict[str, Any]:
    """The trial with the settings a plain load uses (flash attention on, the store's threads),
    or the nearest thread count measured."""
    flash = [t for t in trials if t["flash_attn"] == bool(entry.runtime.get("flash_attn", True))]
    return min(flash, key=lambda t: abs(t["n_threads"] - threads))


def runtime_gain(
    runtime: dict[str, Any], entry: ModelEntry, threads: int
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The defaults' trial, the fastest trial, and how many times sooner the fastest answers."""
    base = default_trial(runtime["trials"], entry, threads)
    best = min(runtime["trials"], key=lambda t: t["seconds"])
    return base, best, base["seconds"] / best["seconds"]


def runtime_hint(runtime: dict[str, Any], entry: ModelEntry, threads: int) -> str:
    _, best, gain = runtime_gain(runtime, entry, threads)
    if gain < MIN_RUNTIME_GAIN:
        return ""
    return (
        f"; its own file answers {gain:.2f}x sooner here with flash attention "
        f"{'on' if best['flash_attn'] else 'off'} and {best['n_threads']} threads: "
        f"`slm optimize {entry.id} --runtime-only` registers that"
    )


def tune_source(
    store: Store, entry: ModelEntry, path: Path, cfg: OptimizeConfig, tokens: list[int]
) -> OptimizeResult:
    """`runtime_only`: register the source's own file with the runtime settings measured
    fastest, if they beat the defaults by `min_speedup`; GuardRefusedError otherwise."""
    need = max(cfg.min_speedup, MIN_RUNTIME_GAIN)
    report = _report(entry, cfg, [], None) | {"note": None}  # the file is kept as it is
    report["rule"] = (
        f"the source's file with the flash attention / threads pair that serves a "
        f"{cfg.prompt_tokens}-token prompt and a {ANSWER_TOKENS}-token answer soonest, if "
        f"{need}x sooner than the defaults"
    )
    threads = store.settings.n_threads
    report["runtime"] = tune_runtime(
        path, tokens[: cfg.prompt_tokens], cfg, thread_options(cfg, threads)
    )
    chosen = report["runtime"]["chosen"]
    base, _, gain = runtime_gain(report["runtime"], entry, threads)
    report["runtime"]["gain_x"] = round(gain, 3)
    if gain < need:  # the defaults themselves winning is a gain of 1.0
        raise GuardRefusedError(
            f"the best settings measured for {entry.id} answer {gain:.3f}x as soon as the "
            f"defaults (flash attention {'on' if base['flash_attn'] else 'off'}, "
            f"{base['n_threads']} threads), not the {need}x that pays; nothing was registered",
            report,
        )
    chosen["row_seconds"] = measure_rows(path, tokens, chosen)
    report["chosen"] = "tuned"
    out = cfg.out or f"{entry.id}-tuned"
    staging = store.staging_dir(out)
    try:
        try:  # the same bytes: a hard link costs no disk; another file system gets a copy
            os.link(path, staging / path.name)
        except OSError:
            shutil.copy2(path, staging / path.name)
        new = _entry(entry, out, staging / path.name, report, store.model_dir(out))
        final = store.register_dir(new, staging, force=cfg.force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return OptimizeResult(out, entry.id + SOURCE_SUFFIX, final / new.filename, report)


def measure_all(
    files: dict[str, Path],
    windows: list[list[int]],
    prompt: list[int],
    cfg: OptimizeConfig,
    threads: int,
    progress: Progress,
) -> list[dict[str, Any]]:
    """The candidate table: drift, speed, and the guard task for those that pass the rest."""
    drift = measure_drift(files, windows, cfg, threads, progress)
    speed = measure_speed(files, prompt, cfg, threads=threads, progress=progress)
    rows = table(files, speed, drift)
    unguarded = dataclasses.replace(cfg, guard=None)
    passing = [r["candidate"] for r in rows[1:] if verdict(r, rows[0], unguarded) is None]
    scores = measure_guard(files, passing, cfg, progress)
    for row in rows:
        row["score"] = scores.get(row["candidate"])
    return rows


def _report(
    entry: ModelEntry, cfg: OptimizeConfig, rows: list[dict[str, Any]], best: dict[str, Any] | None
) -> dict[str, Any]:
    from slmkit.runtime.native import cpu_info

    requant = entry.quantization.upper() not in FLOAT_TYPES
    return {
        "model": entry.id,
        "source_type": entry.quantization,
        "requantized": requant,
        "note": (
            f"the only weights available are {entry.quantization}: every candidate is a "
            "requantization of that file, and quality is measured against it"
            if requant
            else None
        ),
        "cpu": cpu_info()["model"],
        "rule": (
            f"fastest prefill among candidates with mean KLD <= {cfg.kld_max}, decode >= "
            f"{cfg.min_decode}x the source's"
            + (f", {cfg.guard} drop <= {cfg.max_drop} points" if cfg.guard else "")
        ),
        "kld_text": str(cfg.text or "cnn_dailymail validation articles"),
        "prompt_tokens": cfg.prompt_tokens,
        "decode_tokens": cfg.decode_tokens,
        "repeats": cfg.repeats,
        "candidates": rows,
        "chosen": best["candidate"] if best else None,
    }


def _entry(
    src: ModelEntry, out: str, file: Path, report: dict[str, Any], final_dir: Path
) -> ModelEntry:
    chosen = report["chosen"]
    lineage = {
        "base": src.id,
        "replaces": src.id,
        "method": f"optimize-{chosen}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "optimize": report,
        "parent": src.lineage,
    }
    return src.model_copy(
        update={
            "id": out,
            "quantization": src.quantization if chosen == "tuned" else chosen.upper(),
            "filename": file.name,
            "size_bytes": file.stat().st_size,
            "sha256": None,
            "sources": (LocalSource(path=str(final_dir / file.name)),),
            "description": (
                f"{src.id}'s own file with measured runtime settings"
                if chosen == "tuned"
                else f"{src.id} as {chosen}"
            )
            + f", chosen on {report['cpu']} by slm optimize.",
            "imported": True,
            "lineage": lineage,
            "runtime": report["runtime"]["chosen"],
        }
    )
