"""What `slm --version` and `slm doctor` report about this install: the backends whose
libraries are importable and which llama.cpp build is installed (no probe run here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# What each backend needs importable (checked without importing it: torch is slow to load).
BACKEND_MODULES = {
    "llamacpp": ("llama_cpp",),
    "transformers": ("torch", "transformers"),
    "onnx (embeddings, int8 classifiers)": ("onnxruntime",),
}
PIP_BUILD = "pip's build (-march=native, AMX included; `slm doctor` probes it)"


def backends_found() -> dict[str, bool]:
    """Each backend: whether what it needs is importable (found, not imported)."""
    return {
        name: all(importlib.util.find_spec(m) is not None for m in mods)
        for name, mods in BACKEND_MODULES.items()
    }


def llama_recipe() -> str:
    """llama-cpp-python's version and which build of it is installed."""
    import importlib.metadata
    import sys

    from slmkit.runtime import native

    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return "llama-cpp-python not installed"
    wheel = native.installed_wheel(sys.executable)
    recipe = Path(wheel).parent.name.rsplit("-", 1)[0] if wheel else None
    return f"llama-cpp-python {version}, " + (
        f"{recipe} build (slmkit's, for this CPU)" if recipe else PIP_BUILD
    )
