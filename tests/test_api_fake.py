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


def test_models_loaded_by_id_are_kept_bounded_and_closable(
    fake_store: slmkit.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop of task calls by id loads the weights once; past MODEL_CACHE_SIZE ids the least
    recently used is closed; close_models() closes the rest."""
    loads: list[slmkit.Model] = []

    def counted(model_id: str) -> slmkit.Model:
        loads.append(slmkit.loading.load(model_id, store=fake_store))
        return loads[-1]

    closed: list[str] = []
    monkeypatch.setattr(slmkit, "load", counted)
    monkeypatch.setattr(slmkit.Model, "close", lambda self: closed.append(self.id))
    monkeypatch.setattr(slmkit, "MODEL_CACHE_SIZE", 1)
    for _ in range(3):
        slmkit.summarize("The cat sat on the mat. It was warm.", model="fake-chat", max_words=8)
    assert [m.id for m in loads] == ["fake-chat"]
    slmkit.generate_many("fake-base", ["one, two,"], slmkit.GenerationOptions(max_tokens=3))
    assert [m.id for m in loads] == ["fake-chat", "fake-base"] and closed == ["fake-chat"]
    slmkit.close_models()
    assert closed == ["fake-chat", "fake-base"]
    slmkit.summarize("The cat sat on the mat. It was warm.", model="fake-chat", max_words=8)
    assert len(loads) == 3
    slmkit.close_models()
    for m in loads:
        m.backend.close()


def test_finetune_takes_its_config_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """slmkit.finetune's settings are a FinetuneConfig (typed), data/out/base replacing its own;
    an unknown field is refused by the model, before any training."""
    from slmkit.train import FinetuneConfig

    seen: list[FinetuneConfig] = []
    monkeypatch.setattr("slmkit.train.finetune", lambda cfg, **kw: seen.append(cfg) or kw)
    got = slmkit.finetune(
        "a.jsonl", out="m1", config=FinetuneConfig(data="x", out="y", limit=50), force=True
    )
    assert (seen[0].data, seen[0].out, seen[0].limit) == ("a.jsonl", "m1", 50)
    assert got == {"resume": False, "force": True, "max_minutes": None}
    with pytest.raises(TypeError):
        slmkit.finetune("a.jsonl", out="m1", epochs=3)  # type: ignore[call-arg]
