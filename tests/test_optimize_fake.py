"""`slm optimize` on a tiny random-weight Llama written here (llama.cpp runs it; no downloaded
weights): candidates measured and one chosen by the rule, registered with its figures, loaded for
the original id (and `@source` for the original), and every kind of bad input refused with
nothing registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import slmkit
from slmkit.catalog.store import Store
from slmkit.compress.optimize import OptimizeConfig, optimize
from slmkit.errors import (
    GuardRefusedError,
    InputError,
    InvalidOptionsError,
    ModelNotFoundError,
)
from slmkit.runtime import native
from slmkit.settings import Settings
from tests.fakes import fake_entry, install_fake

TEXT = " ".join(f"Sentence {i} says the weather in town {i % 7} was fine." for i in range(200))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    src = tmp_path / "tiny-f32.gguf"
    native._tiny_gguf(src)
    store = Store(tmp_path / "store", Settings(home=tmp_path / "store", n_threads=1))
    store.import_file(src, model_id="tiny")
    install_fake(store, fake_entry("fake-chat"))
    return store


def small(tmp_path: Path, **kw: Any) -> OptimizeConfig:
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    base: dict[str, Any] = dict(
        kld_tokens=120,
        window=64,
        skip=16,
        prompt_tokens=48,
        decode_tokens=8,
        repeats=1,
        guard=None,
        threads=(1,),
        text=text,
        min_decode=0.01,
        min_speedup=0.0,
        recipes=("q8_0", "q4_0"),
    )
    return OptimizeConfig(**(base | kw))


def leftovers(store: Store) -> list[str]:
    return sorted(p.name for p in (store.root / "models").iterdir())


def test_candidates_are_measured_and_the_fastest_within_bounds_is_registered(
    store: Store, tmp_path: Path
) -> None:
    res = optimize("tiny", small(tmp_path, kld_max=100.0), store=store)  # both qualify
    rows = {r["candidate"]: r for r in res.report["candidates"]}
    assert set(rows) == {"source", "q8_0", "q4_0"}
    for r in rows.values():
        assert r["prefill_tps"] > 0 and r["decode_tps"] > 0 and r["size_bytes"] > 0
    assert (
        rows["q8_0"]["tokens"] >= 120 and 0 <= rows["q8_0"]["kld_mean"] < rows["q4_0"]["kld_mean"]
    )
    assert rows["q8_0"]["top1_agreement"] > rows["q4_0"]["top1_agreement"]
    chosen = [r for r in rows.values() if r.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["refused"] is None
    other = next(
        r for r in rows.values() if r["candidate"] not in ("source", chosen[0]["candidate"])
    )
    assert other["refused"].startswith("qualifies, slower prefill")
    fastest = max(
        (r for r in rows.values() if r["candidate"] != "source"), key=lambda r: r["prefill_tps"]
    )
    assert chosen[0] is fastest and res.model_id == f"tiny-{fastest['candidate']}"
    assert res.report["requantized"] is False and res.source == "tiny@source"
    rt = res.report["runtime"]
    assert {(t["flash_attn"], t["n_threads"]) for t in rt["trials"]} == {(True, 1), (False, 1)}
    entry = store.get(res.model_id)
    assert entry.lineage and entry.lineage["replaces"] == "tiny"
    assert entry.runtime == rt["chosen"] and entry.quantization == fastest["candidate"].upper()
    rows = rt["chosen"]["row_seconds"]
    assert sorted(int(n) for n in rows) == list(range(1, 17)) and all(s > 0 for s in rows.values())
    assert leftovers(store) == sorted(["fake-chat", "tiny", res.model_id])  # nothing else kept


def test_the_original_id_loads_the_variant_and_at_source_the_original(
    store: Store, tmp_path: Path
) -> None:
    res = optimize("tiny", small(tmp_path, recipes=("q8_0",)), store=store)
    with slmkit.load("tiny", store=store, n_ctx=64) as m:
        assert m.id == res.model_id and m.path == res.path
        seeded = res.report["runtime"]["chosen"]["row_seconds"]
        assert m.backend.costs.rows == {int(n): s for n, s in seeded.items()}  # type: ignore[attr-defined]
    with slmkit.load("tiny@source", store=store, n_ctx=64) as m:
        assert m.id == "tiny" and m.path.name == "tiny-f32.gguf"
    store.remove(res.model_id)
    assert store.preferred("tiny") == "tiny"  # removing the variant restores the original


def test_a_kld_bound_no_candidate_meets_registers_nothing(store: Store, tmp_path: Path) -> None:
    before = leftovers(store)
    with pytest.raises(GuardRefusedError, match="no candidate for tiny qualifies") as e:
        optimize("tiny", small(tmp_path, kld_max=1e-12), store=store)
    refused = [r["refused"] for r in e.value.report["candidates"][1:]]
    assert all(r and r.startswith("mean KLD") for r in refused)
    assert leftovers(store) == before and store.preferred("tiny") == "tiny"
    # the source keeps running, and the report says how it runs best here
    trials = e.value.report["runtime"]["trials"]
    assert {t["flash_attn"] for t in trials} == {True, False}
    assert all(t["prefill_tps"] > 0 and t["decode_tps"] > 0 for t in trials)


def test_runtime_only_registers_nothing_when_the_defaults_are_as_fast(
    store: Store, tmp_path: Path
) -> None:
    before = leftovers(store)
    with pytest.raises(GuardRefusedError, match="not the 1000.0x that pays") as e:
        optimize("tiny", small(tmp_path, runtime_only=True, min_speedup=1000.0), store=store)
    trials = e.value.report["runtime"]["trials"]  # measured on the source's own file
    assert {(t["flash_attn"], t["n_threads"]) for t in trials} == {(True, 1), (False, 1)}
    assert e.value.report["candidates"] == [] and leftovers(store) == before


def test_runtime_only_keeps_the_file_and_stores_the_faster_settings(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmkit.compress import optimize as module

    measured = module.tune_runtime

    def flash_off_sooner(*a: Any, **kw: Any) -> dict[str, Any]:
        # the measurement is real; only which setting wins is fixed, so the test is not a
        # coin toss between two nearly equal runs of a tiny model
        out = measured(*a, **kw)
        for t in out["trials"]:
            t["seconds"] = 1.0 if t["flash_attn"] else 0.5
        out["chosen"] = {"flash_attn": False, "n_threads": 1}
        return out

    monkeypatch.setattr(module, "tune_runtime", flash_off_sooner)
    res = optimize("tiny", small(tmp_path, runtime_only=True), store=store)
    assert res.model_id == "tiny-tuned" and res.report["runtime"]["gain_x"] == 2.0
    _, src = store.require("tiny@source")
    assert res.path.stat().st_ino == src.stat().st_ino  # a hard link: no second copy
    entry = store.get("tiny-tuned")
    assert entry.quantization == store.get("tiny").quantization
    assert entry.runtime["flash_attn"] is False and len(entry.runtime["row_seconds"]) == 16
    with slmkit.load("tiny", store=store, n_ctx=64) as m:
        assert m.id == "tiny-tuned" and m.entry.runtime["flash_attn"] is False
        assert m.complete("Sentence 1", max_tokens=4, temperature=0).stats.completion_tokens > 0
    store.remove("tiny-tuned")
    assert src.is_file() and store.preferred("tiny") == "tiny"  # the source's file stays


@pytest.mark.parametrize(
    ("model", "kw", "error", "match"),
    [
        ("nope", {}, ModelNotFoundError, "unknown model"),
        ("fake-chat", {}, InputError, "not|GGUF"),
        ("tiny", {"recipes": ("q3_weird",)}, InvalidOptionsError, "unknown candidate q3_weird"),
        ("tiny", {"kld_max": 0.0}, InvalidOptionsError, "above 0"),
        ("tiny", {"out": "bad id!"}, InputError, "invalid model id"),
    ],
)
def test_bad_input_is_one_clear_error_and_nothing_is_written(
    store: Store, tmp_path: Path, model: str, kw: dict[str, Any], error: type, match: str
) -> None:
    before = leftovers(store)
    with pytest.raises(error, match=match):
        optimize(model, small(tmp_path, **kw), store=store)
    assert leftovers(store) == before


def test_an_encoder_or_an_optimized_variant_is_refused(store: Store, tmp_path: Path) -> None:
    enc = fake_entry("enc").model_copy(update={"kind": "encoder", "format": "onnx"})
    install_fake(store, enc)
    with pytest.raises(InputError, match="enc is an encoder .*GGUF language models"):
        optimize("enc", small(tmp_path), store=store)
    res = optimize("tiny", small(tmp_path, recipes=("q8_0",)), store=store)
    with pytest.raises(InputError, match="already an optimized variant of tiny"):
        optimize(res.model_id, small(tmp_path), store=store)


def test_cli_json_and_errors(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from slmkit.cli import cli

    monkeypatch.setenv("SLMKIT_HOME", str(store.root))
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    args = [
        "optimize",
        "tiny",
        "--guard",
        "none",
        "--kld-tokens",
        "60",
        "--repeats",
        "1",
        "--candidates",
        "q8_0",
        "--threads",
        "1",
        "--min-decode",
        "0.01",
        "--text",
        str(text),
    ]
    # the tiny model's context is 128 tokens: the default 512-token window cannot fit
    bad = CliRunner().invoke(cli, args)
    assert bad.exit_code == 1 and bad.output.startswith("error: a 576-token window does not fit")
    assert not (store.root / "models" / "tiny-q8_0").exists()
    args += ["--window", "64", "--prompt-tokens", "48", "--min-speedup", "0"]
    done = CliRunner().invoke(cli, [*args, "--json"])
    assert done.exit_code == 0, done.output
    obj = json.loads(done.stdout.strip().splitlines()[-1])
    assert obj["id"] == "tiny-q8_0" and obj["source"] == "tiny@source"
    assert [r["candidate"] for r in obj["candidates"]] == ["source", "q8_0"]
    # a bound no candidate meets: the table, each refusal's reason on its own line, one error
    none = CliRunner().invoke(cli, [*args, "--out", "tiny-strict", "--kld-max", "1e-9"])
    assert none.exit_code == 1
    assert "  q8_0: mean KLD" in none.output and "> 1e-09" in none.output
    assert "  source, flash attention off" in none.output
    assert none.output.strip().splitlines()[-1].startswith("error: no candidate for tiny")
    assert not (store.root / "models" / "tiny-strict").exists()
    # --runtime-only: no candidate table, the source's trials, one error when nothing pays
    rt_args = [a for a in args if a not in ("--min-speedup", "0")]
    rt = CliRunner().invoke(cli, [*rt_args, "--runtime-only", "--min-speedup", "1000"])
    assert rt.exit_code == 1 and "KLD mean" not in rt.output
    assert "  source, flash attention on, 1 thread:" in rt.output
    assert rt.output.strip().splitlines()[-1].startswith("error: the best settings measured")
    assert not (store.root / "models" / "tiny-tuned").exists()
    for bad_args, msg in (
        (["optimize", "nope"], "unknown model"),
        (["optimize", "fake-chat"], "GGUF language models"),
        (["optimize", "tiny", "--candidates", "zzz"], "unknown candidate zzz"),
    ):
        out = CliRunner().invoke(cli, bad_args)
        assert out.exit_code == 1 and out.output.strip().startswith("error:") and msg in out.output
        assert out.output.count("\n") == 1
