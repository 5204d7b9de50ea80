"""The llama.cpp build that runs where it is built (slmkit.runtime.native), without compiling:
flags that exclude AMX, wheels keyed by CPU, the probe's verdict on a child killed by SIGILL,
the rebuild path it takes, and one clear error where a build cannot run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from slmkit.errors import RuntimeFailure
from slmkit.runtime import native

ROOT = Path(__file__).resolve().parents[1]
X86 = native._is_x86()


def test_the_build_version_is_the_pinned_one() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"llama-cpp-python=={native.LLAMA_CPP_VERSION}" in deps


@pytest.mark.skipif(not X86 or not shutil.which("cc"), reason="x86 with a C compiler")
def test_native_flags_compile_no_amx_even_for_an_amx_cpu() -> None:
    """The flags beat -march: on a Sapphire Rapids target (AMX) nothing AMX is defined."""
    flags = native.native_flags()
    assert "-DGGML_NATIVE=ON" in flags.cmake
    assert set(native.NO_AMX) <= set(flags.cflags)

    def macros(*extra: str) -> str:
        cmd = ["cc", *extra, "-march=sapphirerapids", "-dM", "-E", "-x", "c", "-"]
        return subprocess.run(cmd, input="", capture_output=True, text=True, check=True).stdout

    assert "__AMX_TILE__" in macros()  # the target alone would turn AMX on
    for extra in (flags.cflags, tuple(reversed(flags.cflags))):
        out = macros(*extra)
        assert "__AMX" not in out and "__AVX512F__" in out  # other extensions stay


@pytest.mark.skipif(not X86, reason="x86")
def test_portable_flags_take_only_listed_extensions_and_never_avx512() -> None:
    flags = native.portable_flags({"avx", "avx2", "fma", "avx512f"})
    assert "-DGGML_NATIVE=OFF" in flags.cmake
    assert "-DGGML_AVX2=ON" in flags.cmake and "-DGGML_F16C=OFF" in flags.cmake
    assert not any("AVX512" in c for c in flags.cmake)
    env = flags.env()
    assert "-mno-amx-tile" in env["CFLAGS"] and env["CMAKE_ARGS"].startswith("-DGGML_NATIVE=OFF")
    args = flags.cmake_args()
    assert any(a.startswith("-DCMAKE_CXX_FLAGS=") and "-mno-amx-int8" in a for a in args)


def test_wheels_are_kept_apart_by_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLMKIT_BUILD_CACHE", str(tmp_path))
    flags = native.BuildFlags("native-no-amx", ("-DGGML_NATIVE=ON",))
    cpu = {"model": "Intel Xeon", "flags": ["avx2", "amx_tile"], "machine": "x86_64"}
    monkeypatch.setattr(native, "cpu_info", lambda: cpu)
    here = native.wheel_dir(flags)
    monkeypatch.setattr(native, "cpu_info", lambda: {**cpu, "model": "AMD EPYC"})
    assert native.wheel_dir(flags) != here
    assert here.parent == tmp_path / "llama-wheels" and here.name.startswith("native-no-amx-")
    other = native.BuildFlags("portable", ("-DGGML_NATIVE=OFF",))
    assert native.wheel_dir(other) != native.wheel_dir(flags)


def test_build_bypasses_pips_cache_and_lands_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SLMKIT_BUILD_CACHE", str(tmp_path))
    flags = native.BuildFlags("native-no-amx", ("-DGGML_NATIVE=ON",), ("-mno-amx-tile",))
    calls: list[tuple[list[str], dict[str, str]]] = []

    real_run = subprocess.run

    def fake_run(cmd: list[str], **kw: object) -> object:
        if "wheel" not in cmd:
            return real_run(cmd, **kw)  # type: ignore[call-overload]
        env = kw["env"]
        assert isinstance(env, dict)
        calls.append((cmd, env))
        out = Path(cmd[cmd.index("-w") + 1])
        (out / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl").write_bytes(b"wheel")

    monkeypatch.setattr(native.subprocess, "run", fake_run)
    wheel = native.build_wheel(flags, sys.executable)
    assert wheel.parent == native.wheel_dir(flags) and wheel.read_bytes() == b"wheel"
    cmd, env = calls[0]
    assert "--no-cache-dir" in cmd and "--no-binary" in cmd
    assert env["CMAKE_ARGS"] == "-DGGML_NATIVE=ON" and env["CXXFLAGS"] == "-mno-amx-tile"
    assert native.build_wheel(flags, sys.executable) == wheel and len(calls) == 1  # kept
    assert not list(wheel.parent.parent.glob(".building-*"))


def test_a_probe_child_killed_by_sigill_is_named_with_the_fix() -> None:
    result = native.probe(child=native.SIMULATED_SIGILL)
    assert not result.ok and result.signal == "SIGILL" and result.returncode == -4
    line = native.failure_line(result)
    assert "SIGILL" in line and "python -m slmkit.runtime.native check" in line
    assert "\n" not in line
    assert native.describe_exit(-4).startswith("killed by SIGILL; rebuild")
    assert native.describe_exit(3) == "exit 3"


def test_a_probe_child_that_fails_or_hangs_is_reported() -> None:
    failed = native.probe(child=[sys.executable, "-c", "raise SystemExit('no model')"])
    assert not failed.ok and failed.returncode == 1 and failed.detail == "no model"
    hung = native.probe(child=[sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert not hung.ok and hung.returncode is None and "hung" in native.failure_line(hung)


def _rebuild_run(installed: str | None, verdicts: list[bool]) -> tuple[int, list[str]]:
    built: list[str] = []
    probes = iter(verdicts)

    def check(python: str) -> native.ProbeResult:
        ok = next(probes)
        return native.ProbeResult(ok, 0 if ok else -4, None if ok else "SIGILL")

    def build(flags: native.BuildFlags, python: str) -> Path:
        built.append(flags.name)
        return Path(f"/w/{flags.name}.whl")

    rc = native.check_or_rebuild(
        sys.executable,
        build=build,
        install=lambda wheel, py: None,
        check=check,
        installed=lambda py: installed,
        log=lambda s: None,
    )
    return rc, built


def test_probe_passes_so_nothing_is_rebuilt() -> None:
    assert _rebuild_run(None, [True]) == (0, [])


def test_a_dying_native_build_is_rebuilt_portable_once() -> None:
    installed = str(native.wheel_dir(native.native_flags()) / "x.whl")
    assert _rebuild_run(installed, [False, True]) == (0, ["portable"])


def test_a_foreign_build_is_replaced_by_this_cpus_own_first() -> None:
    """A wheel pip built elsewhere (its cache, another CPU): this CPU's native build first."""
    assert _rebuild_run("/root/.cache/pip/wheels/x.whl", [False, True]) == (0, ["native-no-amx"])
    assert _rebuild_run(None, [False, False, True]) == (0, ["native-no-amx", "portable"])


def test_when_every_rebuild_dies_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    installed = str(native.wheel_dir(native.native_flags()) / "x.whl")
    assert _rebuild_run(installed, [False, False]) == (1, ["portable"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: llama.cpp died of SIGILL")


def test_the_verdict_is_probed_once_per_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SLMKIT_BUILD_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "build_fingerprint", lambda: "abc")
    calls: list[int] = []
    real_probe = native.probe

    def sigill(**kw: object) -> native.ProbeResult:
        calls.append(1)
        return real_probe(child=native.SIMULATED_SIGILL)

    monkeypatch.setattr(native, "probe", sigill)
    first, second = native.verified_build(), native.verified_build()
    assert calls == [1] and first == second and second.signal == "SIGILL"


def test_loading_a_model_on_a_dying_build_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In-process, llama.cpp would take the whole process down: the cached verdict refuses."""
    from slmkit.runtime.llamacpp import LlamaCppBackend
    from tests.fakes import fake_entry

    dead = native.ProbeResult(False, -4, "SIGILL")
    monkeypatch.setattr(native, "verified_build", lambda **kw: dead)
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(RuntimeFailure, match="died of SIGILL.*slmkit.runtime.native check"):
        LlamaCppBackend.load(path, fake_entry("m"), n_ctx=64, n_threads=1)
