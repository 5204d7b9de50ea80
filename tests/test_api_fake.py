"""The public API is whole: every name in `slmkit.__all__` imports, is documented, and (for
functions) is fully typed; the task functions' return types and every error are in it."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import slmkit
import slmkit.errors


@pytest.mark.parametrize("name", slmkit.__all__)
def test_public_name_imports_documented_typed(name: str) -> None:
    obj = getattr(slmkit, name)
    exec(f"from slmkit import {name}", {})  # the import form users write
    if isinstance(obj, str):  # DEFAULT_MODEL
        return
    doc = inspect.getdoc(obj) or ""
    assert doc.strip() and not doc.startswith(f"{name}("), f"{name} has no docstring"
    if inspect.isfunction(obj):
        sig = inspect.signature(obj)
        untyped = [
            p.name for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty
        ]
        assert not untyped, f"{name}: parameters without a type: {untyped}"
        assert sig.return_annotation is not inspect.Signature.empty, f"{name}: no return type"


def test_every_error_and_return_type_is_exported() -> None:
    errors = {
        n
        for n, c in vars(slmkit.errors).items()
        if isinstance(c, type) and issubclass(c, Exception)
    }
    assert errors <= set(slmkit.__all__), errors - set(slmkit.__all__)
    for returned in ("Prediction", "Cascade", "Redaction", "SummaryResult", "FinetuneResult"):
        assert returned in slmkit.__all__
    assert len(slmkit.__all__) == len(set(slmkit.__all__))


def test_import_stays_light() -> None:
    """The return types load on first use: importing slmkit pulls no task or training stack."""
    heavy = ("torch", "slmkit.train", "slmkit.tasks.cascade", "onnxruntime")
    code = f"import sys, slmkit; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
