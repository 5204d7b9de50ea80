"""The native llama.cpp build: compiler flags that run on this CPU, a wheel cache keyed by the
CPU and the flags, and a probe that proves the build decodes before anything relies on it.

Why this exists: llama-cpp-python compiles llama.cpp with `-march=native`. On a Xeon with AMX
that turns on ggml's AMX backend, whose first matrix product dies of SIGILL in a virtual machine
that reports AMX but does not grant it (an open upstream defect). pip's own wheel cache also
reuses a wheel built on another CPU without a word. So the build is made here: native minus AMX,
cached under a key of CPU + flags + compiler + Python, proved by a one-token decode in a child
process, and rebuilt once with portable flags if that child dies of a signal.

This file is stdlib-only at module level so that it runs by path before slmkit is installed:

    python src/slmkit/runtime/native.py install       # build (or reuse) and install
    python src/slmkit/runtime/native.py check         # probe; rebuild portable if it dies
    python src/slmkit/runtime/native.py probe         # probe the installed build only
    python src/slmkit/runtime/native.py cmake-flags   # the flags, for llama-server/llama-bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

LLAMA_CPP_VERSION = "0.3.36"  # keep equal to the pin in pyproject.toml (a test checks)
NO_AMX = ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16")
# The instruction sets a portable (non-native) x86 build may use, each only where the CPU
# lists it: x86-64-v3, without AVX-512 or AMX (the extensions hypervisors most often
# advertise without granting).
PORTABLE_X86 = {
    "sse4_2": "GGML_SSE42",
    "avx": "GGML_AVX",
    "avx2": "GGML_AVX2",
    "fma": "GGML_FMA",
    "f16c": "GGML_F16C",
    "bmi2": "GGML_BMI2",
}
REBUILD_HINT = "python -m slmkit.runtime.native check (in a checkout: make llama)"


@dataclass(frozen=True)
class BuildFlags:
    """How llama.cpp is compiled: `name` says which recipe, `cmake` the -D options,
    `cflags` the extra compiler flags (C and C++)."""

    name: str
    cmake: tuple[str, ...]
    cflags: tuple[str, ...] = ()

    def cmake_args(self) -> list[str]:
        """The options for a direct cmake configure (llama-server, llama-bench)."""
        extra = " ".join(self.cflags)
        flags = [f"-DCMAKE_C_FLAGS={extra}", f"-DCMAKE_CXX_FLAGS={extra}"] if extra else []
        return [*self.cmake, *flags]

    def env(self) -> dict[str, str]:
        """Environment for building llama-cpp-python (scikit-build-core reads CMAKE_ARGS; CMake
        seeds CMAKE_C_FLAGS/CMAKE_CXX_FLAGS from CFLAGS/CXXFLAGS)."""
        extra = " ".join(self.cflags)
        return {"CMAKE_ARGS": " ".join(self.cmake), "CFLAGS": extra, "CXXFLAGS": extra}


def cpu_info() -> dict[str, object]:
    """The CPU's model name and feature flags (Linux /proc/cpuinfo; elsewhere platform's)."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {"model": model, "flags": sorted(flags), "machine": platform.machine()}


def compiler_accepts(flag: str, cc: str | None = None) -> bool:
    """Whether the C compiler knows `flag` (old compilers know no AMX at all: nothing to drop)."""
    compiler = cc or os.environ.get("CC") or shutil.which("cc") or "gcc"
    try:
        done = subprocess.run(
            [compiler, "-Werror", flag, "-x", "c", "-E", "-", "-o", os.devnull],
            input="",
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def native_flags() -> BuildFlags:
    """-march=native (every extension this CPU has) minus AMX."""
    cflags = tuple(f for f in NO_AMX if compiler_accepts(f)) if _is_x86() else ()
    return BuildFlags("native-no-amx", ("-DGGML_NATIVE=ON",), cflags)


def portable_flags(cpu_flags: set[str] | None = None) -> BuildFlags:
    """No -march=native: only the x86-64-v3 extensions this CPU lists (none off x86)."""
    if not _is_x86():
        return BuildFlags("portable", ("-DGGML_NATIVE=OFF",))
    have = cpu_flags if cpu_flags is not None else set(cpu_info()["flags"])  # type: ignore[call-overload]
    opts = [f"-D{opt}={'ON' if flag in have else 'OFF'}" for flag, opt in PORTABLE_X86.items()]
    return BuildFlags("portable", ("-DGGML_NATIVE=OFF", *opts), NO_AMX)


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


def compiler_version() -> str:
    compiler = os.environ.get("CC") or shutil.which("cc") or "gcc"
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def build_key(flags: BuildFlags) -> str:
    """What a built wheel depends on: never reuse one across CPUs, flags or compilers."""
    cpu = cpu_info()
    parts = {
        "llama_cpp_python": LLAMA_CPP_VERSION,
        "flags": asdict(flags),
        "cpu": [cpu["model"], cpu["flags"]],
        "compiler": compiler_version(),
        "python": sys.implementation.cache_tag,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cache_root() -> Path:
    """$SLMKIT_BUILD_CACHE, else $XDG_CACHE_HOME/slmkit, else ~/.cache/slmkit."""
    if os.environ.get("SLMKIT_BUILD_CACHE"):
        return Path(os.environ["SLMKIT_BUILD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slmkit"


def wheel_dir(flags: BuildFlags) -> Path:
    return cache_root() / "llama-wheels" / f"{flags.name}-{build_key(flags)}"


def build_wheel(flags: BuildFlags, python: str) -> Path:
    """The llama-cpp-python wheel for `flags` on this CPU: from the keyed cache, or compiled
    (pip's wheel cache bypassed) into a temp folder and renamed into place when whole."""
    final = wheel_dir(flags)
    found = sorted(final.glob("llama_cpp_python-*.whl"))
    if found:
        return found[0]
    final.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **flags.env()}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".building-") as tmp:
        cmd = [python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir"]
        cmd += ["--no-binary", "llama-cpp-python", "--disable-pip-version-check", "-q"]
        cmd += ["-w", tmp, f"llama-cpp-python=={LLAMA_CPP_VERSION}"]
        print(
            f"llama.cpp: compiling llama-cpp-python {LLAMA_CPP_VERSION} ({flags.name}: "
            f"{' '.join(flags.cmake + flags.cflags)}); about 10 minutes on 2 cores, once per CPU",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run(cmd, env=env, check=True)
        wheels = list(Path(tmp).glob("llama_cpp_python-*.whl"))
        if not wheels:
            raise RuntimeError("pip wheel produced no llama-cpp-python wheel")
        staged = Path(tmp) / "done"
        staged.mkdir()
        wheels[0].rename(staged / wheels[0].name)
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
    return next(final.glob("llama_cpp_python-*.whl"))


def install_wheel(wheel: Path, python: str) -> None:
    """Install exactly this wheel (replacing whatever llama-cpp-python is there) and its deps."""
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(wheel)], check=True)
    subprocess.run([*pip, str(wheel)], check=True)


def installed_wheel(python: str) -> str | None:
    """The local wheel file the installed llama-cpp-python came from (pip's direct_url.json),
    or None when it came from anywhere else (an index, pip's cache) or is not installed."""
    code = (
        "import importlib.metadata as m, json\n"
        "try:\n    d = m.distribution('llama-cpp-python')\n"
        "except m.PackageNotFoundError:\n    print('')\n"
        "else:\n    print(json.loads(d.read_text('direct_url.json') or '{}').get('url', ''))\n"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    url = done.stdout.strip()
    return url.removeprefix("file://") if url.startswith("file://") else None


@dataclass
class ProbeResult:
    """What the probe child did: ok, or the signal / exit code that ended it."""

    ok: bool
    returncode: int | None
    signal: str | None = None
    detail: str = ""
    seconds: float = 0.0
    features: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def signal_name(returncode: int) -> str | None:
    """SIGILL for -4 (a child killed by a signal); None for a normal exit."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def probe(
    python: str | None = None, *, timeout: float = 300, child: list[str] | None = None
) -> ProbeResult:
    """Run the probe child (tiny models, every weight type the catalog uses, a prompt and one
    decoded token) in its own process; a signal or a failure there never reaches the caller.
    `child` replaces the child's command (tests simulate a SIGILL with it)."""
    cmd = child or [python or sys.executable, str(Path(__file__).resolve()), "probe-child"]
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ProbeResult(False, None, None, f"no answer within {timeout:.0f} s")
    elapsed = round(time.perf_counter() - started, 2)
    sig = signal_name(done.returncode)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return ProbeResult(False, done.returncode, sig, detail[0][-300:], elapsed)
    try:
        features = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return ProbeResult(False, 0, None, "the probe printed no result", elapsed)
    return ProbeResult(True, 0, None, "decoded one token", elapsed, features)


def failure_line(result: ProbeResult) -> str:
    """One line for a failed probe: what died, and how to fix it."""
    if result.signal:
        what = f"llama.cpp died of {result.signal}"
        if result.signal == "SIGILL":
            what += " (an instruction this CPU does not run: a build made for another CPU?)"
    elif result.returncode is None:
        what = f"the llama.cpp probe hung ({result.detail})"
    else:
        what = f"the llama.cpp probe failed (exit {result.returncode}: {result.detail})"
    return f"{what}; rebuild it for this CPU: {REBUILD_HINT}"


def install_native(
    python: str,
    *,
    build: Callable[[BuildFlags, str], Path] = build_wheel,
    install: Callable[[Path, str], None] = install_wheel,
) -> Path:
    """Make the installed llama-cpp-python the native-minus-AMX build for this CPU (compiled
    once per CPU, flags and compiler; a wheel from anywhere else is replaced)."""
    flags = native_flags()
    wheel = build(flags, python)
    if installed_wheel(python) != str(wheel):
        print(
            f"llama.cpp: installing the {flags.name} build for this CPU ({wheel})",
            file=sys.stderr,
            flush=True,
        )
        install(wheel, python)
    return wheel


def check_or_rebuild(
    python: str,
    *,
    first: ProbeResult | None = None,
    build: Callable[[BuildFlags, str], Path] = build_wheel,
    install: Callable[[Path, str], None] = install_wheel,
    check: Callable[[str], ProbeResult] = probe,
    installed: Callable[[str], str | None] = installed_wheel,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> int:
    """Prove the installed build decodes. If the probe dies, rebuild (this CPU's native-minus-AMX
    build unless that is what failed, then portable flags; never from pip's wheel cache, whose
    wheel may come from another CPU) and probe again; if the last one dies too, one `error:`
    line and exit status 1."""
    result = first or check(python)
    if result.ok:
        log(f"llama.cpp: probe passed ({result.seconds} s)")
        return 0
    log(f"llama.cpp: probe failed: {failure_line(result)}")
    recipes = [portable_flags()]
    native = native_flags()
    if not (installed(python) or "").startswith(str(wheel_dir(native))):
        recipes.insert(0, native)  # not this CPU's own native build yet: that first
    for flags in recipes:
        log(
            f"llama.cpp: rebuilding for this CPU ({flags.name}: {' '.join(flags.cmake)}), "
            "not from pip's wheel cache"
        )
        install(build(flags, python), python)
        result = check(python)
        if result.ok:
            log(f"llama.cpp: probe passed after the {flags.name} rebuild ({result.seconds} s)")
            return 0
    print(
        f"error: {failure_line(result)} (the {recipes[-1].name} rebuild failed the probe too)",
        file=sys.stderr,
    )
    return 1


def describe_exit(returncode: int) -> str:
    """'exit 3', or for a child killed by a signal: which, and the fix where a rebuild is one."""
    sig = signal_name(returncode)
    if sig is None:
        return f"exit {returncode}"
    fix = f"; rebuild llama.cpp for this CPU: {REBUILD_HINT}" if sig == "SIGILL" else ""
    return f"killed by {sig}{fix}"


def build_fingerprint() -> str | None:
    """The installed llama.cpp libraries (names, sizes, mtimes) and this CPU, hashed: a probe
    verdict holds for exactly this pair. None when llama_cpp is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    libs = sorted(Path(spec.origin).parent.glob("lib/*"))
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in libs if p.is_file()]
    cpu = cpu_info()
    blob = json.dumps([stats, cpu["model"], cpu["flags"]]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def verified_build(*, timeout: float = 300) -> ProbeResult:
    """The probe's verdict on the installed build on this CPU: run once (a few seconds), then
    read from the cache. Callers refuse to load a model in-process when it failed, so a build
    that would die of SIGILL gives one clear error instead of killing the process."""
    fingerprint = build_fingerprint()
    if fingerprint is None:
        return ProbeResult(False, None, None, "llama-cpp-python is not installed")
    path = cache_root() / "probe" / f"{fingerprint}.json"
    try:
        return ProbeResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    result = probe(timeout=timeout)
    if result.returncode is not None:  # a verdict, not a hang: keep it
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result.as_dict()))
        tmp.replace(path)
    return result


SIMULATED_SIGILL = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]


# ---- the probe child: runs in its own process, may die ----

PROBE_TYPES = ("Q4_0", "Q4_1", "Q8_0", "Q4_K_M", "IQ4_NL")


def _tiny_gguf(path: Path) -> None:
    """A 2-layer random-weight Llama in F32 with a byte-level SentencePiece vocabulary; its
    shapes are multiples of 256 so every quantized type (K-quants too) and every matrix kernel
    llama.cpp picks on this CPU (repack, AMX) applies to it."""
    import gguf
    import numpy as np

    n_embd, n_ff, n_layer, n_head = 256, 512, 2, 4
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"w{i}" for i in range(512 - len(tokens))]
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(128)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)  # all F32
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (len(tokens) - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def t(name: str, *shape: int) -> None:
        data = np.ones(shape, np.float32) if len(shape) == 1 else rng.normal(0, 0.05, shape)
        w.add_tensor(name, data.astype(np.float32))

    t("token_embd.weight", len(tokens), n_embd)
    t("output_norm.weight", n_embd)
    t("output.weight", len(tokens), n_embd)
    for b in range(n_layer):
        for name, shape in (
            ("attn_norm", (n_embd,)),
            ("ffn_norm", (n_embd,)),
            ("attn_q", (n_embd, n_embd)),
            ("attn_k", (n_embd, n_embd)),
            ("attn_v", (n_embd, n_embd)),
            ("attn_output", (n_embd, n_embd)),
            ("ffn_gate", (n_ff, n_embd)),
            ("ffn_up", (n_ff, n_embd)),
            ("ffn_down", (n_embd, n_ff)),
        ):
            t(f"blk.{b}.{name}.weight", *shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def probe_child() -> None:
    """Quantize the tiny model to each type, load it, prefill 8 tokens (matrix-matrix kernels)
    and decode 1 (matrix-vector kernels). Prints the build's CPU features as JSON."""
    import ctypes

    import llama_cpp

    llama_cpp.llama_log_set(llama_cpp.llama_log_callback(lambda *a: None), ctypes.c_void_p(0))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "f32.gguf"
        _tiny_gguf(src)
        for qtype in PROBE_TYPES:
            dst = Path(tmp) / f"{qtype}.gguf"
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}")
            if llama_cpp.llama_model_quantize(
                str(src).encode(), str(dst).encode(), ctypes.byref(params)
            ):
                raise SystemExit(f"could not quantize the probe model to {qtype}")
            llm = llama_cpp.Llama(str(dst), n_ctx=64, n_threads=os.cpu_count() or 1, verbose=False)
            llm.eval(list(range(3, 11)))
            llm.eval([11])
            llm.close()
    print(json.dumps(build_features()))


def build_features() -> dict[str, bool]:
    """The CPU features the loaded llama.cpp build was compiled for (ggml's own report)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    return parse_features(info)


def parse_features(info: str) -> dict[str, bool]:
    """'CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 0 |' -> {'SSE3': True, 'AVX2': True, ...}."""
    features: dict[str, bool] = {}
    for part in info.split("|"):
        key, eq, value = part.rpartition(":")[-1].partition("=")
        if eq and key.strip():
            features[key.strip()] = value.strip() == "1"
    return features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="native.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "action", choices=["install", "check", "probe", "probe-child", "cmake-flags"]
    )
    parser.add_argument("--python", default=sys.executable, help="the environment to act on")
    parser.add_argument(
        "--simulate-sigill",
        action="store_true",
        help="check: make the first probe child die of SIGILL, to see the rebuild path",
    )
    args = parser.parse_args(argv)
    if args.action == "probe-child":
        probe_child()
    elif args.action == "cmake-flags":
        print(" ".join(native_flags().cmake_args()))
    elif args.action == "install":
        install_native(args.python)
    elif args.action == "check":
        first = probe(args.python, child=SIMULATED_SIGILL) if args.simulate_sigill else None
        return check_or_rebuild(args.python, first=first)
    else:
        result = probe(args.python)
        print(json.dumps(result.as_dict()))
        if not result.ok:
            print(f"error: {failure_line(result)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
