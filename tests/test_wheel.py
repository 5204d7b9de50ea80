"""The wheel is the product: build the sdist and wheel, check them as an index would, install
the wheel (with its extras) into a fresh virtual environment outside the checkout, and run the
README's first commands there from another directory, with no `src/` on the path and no
`shared/data` above the working directory.

One shortcut, said plainly: llama-cpp-python is installed into the fresh environment from
slmkit's own wheel cache (`native.py install`, the wheel `make test` built for this CPU),
where a user's `pip install` compiles it from source (about 10 minutes here); the README's
`python -m slmkit.runtime.native check` then probes it as it would a user's build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHARED_DATA
from tests.test_release_fake import readme_install
from tests.test_serve import free_port

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data"),
]
REPO = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m-instruct"


class Env:
    """A fresh virtual environment and a working directory far from the checkout."""

    def __init__(self, root: Path) -> None:
        self.venv = root / "venv"
        self.cwd = root / "elsewhere"
        self.cwd.mkdir()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "SLMKIT_DATA_DIR", "VIRTUAL_ENV", "SLMKIT_HOME")
        }
        self.env.update(
            SLMKIT_HOME=str(root / "store"),
            PATH=f"{self.venv / 'bin'}:{self.env['PATH']}",
            VIRTUAL_ENV=str(self.venv),
        )

    def run(self, *cmd: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(cmd), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, (*wheels, *sdists))],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return wheels[0]


def test_the_wheel_carries_its_package_data_and_licence(dist: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(dist).namelist())
    assert "slmkit/py.typed" in names
    for page_file in (
        "page.html",
        "chat.js",
        "chat.css",
        "vendor/marked.umd.js",
        "vendor/purify.min.js",
    ):
        assert f"slmkit/serve/static/{page_file}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "shared/")) for n in names)


@pytest.fixture(scope="module")
def fresh(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The fresh environment (2.4 GB with the extras: removed afterwards, since pytest keeps
    the last three runs' temp folders)."""
    import shutil

    env = Env(tmp_path_factory.mktemp("fresh"))
    subprocess.run([sys.executable, "-m", "venv", str(env.venv)], check=True)
    py = str(env.venv / "bin" / "python")
    env.run(py, str(REPO / "src/slmkit/runtime/native.py"), "install", "--python", py)
    env.run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", f"{dist}[torch,ray]")
    yield env
    shutil.rmtree(env.venv, ignore_errors=True)


# what each README command must show, beyond exiting 0
EXPECT = {
    "slm --version": ("slmkit 0.", "llama.cpp: llama-cpp-python", "llamacpp (found)"),
    "slm models": (MODEL,),
    "slm doctor": ("probe passed",),
    "slm run": ("Paris",),
    "slm data pull": ("sha256 verified",),
    "slm eval": (f"model                  {MODEL}", "accuracy", "n                      50"),
}


def test_installed_wheel_runs_the_readme_install(fresh: Env, dist: Path) -> None:
    cmds = readme_install()
    assert cmds[0].startswith("python -m venv") and cmds[1] == f"pip install {dist.name}"
    assert cmds[-1] == "slm serve"  # run by the next test, on a free port
    for cmd in cmds[2:-1]:
        out = fresh.run("bash", "-c", cmd.replace("../shared/data", str(SHARED_DATA))).stdout
        for key, wanted in EXPECT.items():
            if cmd.startswith(key):
                assert all(w in out for w in wanted), (cmd, out)
        if cmd == "slm models":
            assert out.count(MODEL) == 1  # one table, not two
    where = fresh.run("python", "-c", "import slmkit; print(slmkit.__file__, slmkit.__version__)")
    path, version = where.stdout.split()
    assert path.startswith(str(fresh.venv)) and dist.name.startswith(f"slmkit-{version}-")


@pytest.fixture
def served(fresh: Env) -> Iterator[str]:
    fresh.run("slm", "pull", MODEL)  # (done by the README sequence; here when run alone)
    port = free_port()
    log = fresh.cwd / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["slm", "serve", "--port", str(port)],  # the README's last command
            cwd=fresh.cwd,
            env=fresh.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "slm serve did not start"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_installed_wheel_serves_chat_and_the_page(served: str) -> None:
    page = httpx.get(served + "/", timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16,
        "temperature": 0,
    }
    r = httpx.post(served + "/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    assert "Paris" in r.json()["choices"][0]["message"]["content"]
