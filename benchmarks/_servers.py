"""Starting and stopping local servers for the server benchmarks (loopback only)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx

from slmkit.runtime.native import build_key, native_flags


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Wait until GET url/v1/models answers 200; exit if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it does not exit within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def build_llama_server(version: str, cache: Path) -> Path | None:
    """llama.cpp's own C++ `llama-server`, built once from the llama-cpp-python sdist of
    `version` (it vendors llama.cpp) into `cache`. Returns None (with a message) where it
    cannot be built here: no cmake, no compiler, or pip cannot fetch the sdist."""
    flags = native_flags()
    build = cache / f"build-{flags.name}-{build_key(flags)}"  # never another CPU's binaries
    binary = build / "bin" / "llama-server"
    if binary.exists() and (binary.parent / "llama-bench").exists():
        return binary
    if not shutil.which("cmake"):
        print("llama-server: cmake not found, skipped")
        return None
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / "sdist"
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        + ["--dest", str(sdist), f"llama-cpp-python=={version}"],
        capture_output=True,
        text=True,
    )
    archives = sorted(sdist.glob("llama_cpp_python-*.tar.gz"))
    if got.returncode or not archives:
        print(f"llama-server: could not download the sdist: {got.stderr.strip()[-300:]}")
        return None
    src = cache / "src"
    if not src.exists():
        with tarfile.open(archives[0]) as tar:
            tar.extractall(src, filter="data")
    roots = list(src.glob("*/vendor/llama.cpp"))
    if not roots:
        print("llama-server: the sdist carries no vendor/llama.cpp")
        return None
    cfg = ["cmake", "-S", str(roots[0]), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    cfg += ["-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF"]
    # the flags slmkit's own llama-cpp-python build uses (native minus AMX): same kernels
    cfg += ["-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", *flags.cmake_args()]
    jobs = str(os.cpu_count() or 2)
    print("llama-server: building from the llama-cpp-python sdist (several minutes, once)")
    targets = ["--target", "llama-server", "llama-bench"]
    for cmd in (cfg, ["cmake", "--build", str(build), *targets, "-j", jobs]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(f"llama-server: build failed: {(done.stdout + done.stderr)[-600:]}")
            return None
    return binary if binary.exists() else None
