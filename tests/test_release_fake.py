"""Release hygiene, model-free: one version, the licence, the changelog, and the Containerfile
against the README and the llama.cpp recipe. No container engine runs here, so the image
itself is not built by any test: what can be checked without one is checked."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from click.testing import CliRunner

import slmkit
from slmkit.runtime import native

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def test_one_version() -> None:
    assert slmkit.__version__ == VERSION  # read from the installed metadata
    hits = [
        str(p.relative_to(REPO))
        for p in (REPO / "src").rglob("*.py")
        if f'"{VERSION}"' in p.read_text() and "assets.py" not in p.name  # a wheel's version
    ]
    assert hits == [], f"version written again in {hits}"
    from slmkit.cli import cli

    out = CliRunner().invoke(cli, ["--version"]).output
    assert out.splitlines()[0] == f"slmkit {VERSION}"
    assert "llama.cpp: llama-cpp-python" in out and "backends: llamacpp (" in out


def test_licence_and_changelog() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert f"## {VERSION} " in (REPO / "CHANGELOG.md").read_text()


def run_lines(containerfile: str) -> list[str]:
    """The shell commands of the RUN instructions (continuations joined, split on &&)."""
    joined = containerfile.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if line.startswith("RUN "):
            out += [c.strip() for c in line[4:].split("&&")]
    return out


def readme_install() -> list[str]:
    section = (REPO / "README.md").read_text().split("\n## Install\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [re.sub(r"\s+#.*$", "", ln).strip() for ln in block.splitlines() if ln.strip()]


def test_containerfile_installs_as_the_readme_says() -> None:
    text = (REPO / "Containerfile").read_text()
    runs = run_lines(text)
    readme = readme_install()
    wheel = f"slmkit-{VERSION}-py3-none-any.whl"
    assert f"pip install {wheel}" in readme
    # the README's pip install of the wheel, with the [ray] extra the manifests need
    assert any(
        re.fullmatch(r'pip install .*"\$\(ls /tmp/wheels/slmkit-\*\.whl\)\[ray\]"', c) for c in runs
    )
    # and the README's llama.cpp check, word for word
    check = next(c for c in readme if c.startswith("python -m slmkit.runtime.native"))
    assert check in runs
    assert "USER slm" in text and "VOLUME /data/slmkit" in text
    assert re.search(r'^CMD \["slm", "serve"', text, re.M)


def test_containerfile_compiles_llama_cpp_with_the_portable_safe_recipe() -> None:
    env_block = (REPO / "Containerfile").read_text().split("\nENV ", 1)[1].split("\n\n", 1)[0]
    values = dict(
        tok.split("=", 1) for tok in shlex.split(env_block.replace("\\\n", " ")) if "=" in tok
    )
    recipe = native.portable_flags(set(native.PORTABLE_X86)).env()
    for key in ("CMAKE_ARGS", "CFLAGS", "CXXFLAGS"):
        assert values[key] == recipe[key], key
    assert "-DGGML_NATIVE=OFF" in values["CMAKE_ARGS"] and "-mno-amx-tile" in values["CFLAGS"]


def test_manifests_name_the_image_make_builds() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "-t slmkit:$(VERSION)" in makefile
    from slmkit.cli.scale import kuberay

    image = next(p for p in kuberay.params if p.name == "image")
    assert image.default == f"slmkit:{VERSION}"
