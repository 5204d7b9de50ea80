"""`slm optimize` on the real SmolLM2-135M (its only weights: Q4_1), in a store of its own so
the shared store's models stay as they are: the Q4_0 made from it is refused for its KL
divergence whatever its speed, the Q8_0 stays close to the source, and once registered the
variant answers for the original id while `@source` still loads the Q4_1 file."""

from __future__ import annotations

from pathlib import Path

import pytest

import slmkit
from slmkit.catalog.store import Store
from slmkit.compress.optimize import OptimizeConfig, optimize
from slmkit.settings import Settings


@pytest.fixture(scope="module")
def own_store(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("opt")
    store = Store(root, Settings(home=root))
    store.import_file(smollm_path, model_id=slmkit.DEFAULT_MODEL)
    return store


def test_smollm2_q4_0_is_refused_for_drift_and_q8_0_is_kept_close(own_store: Store) -> None:
    cfg = OptimizeConfig(
        kld_tokens=1500,
        repeats=1,
        decode_tokens=16,
        guard="sst2",
        limit=40,
        max_drop=10.0,
        recipes=("q8_0", "q4_0"),
        min_decode=0.5,  # decode ratios on 2 shared cores are noisy; the rule is tested fake
        min_speedup=0.0,
        threads=(own_store.settings.n_threads,),
    )
    res = optimize(slmkit.DEFAULT_MODEL, cfg, store=own_store)
    rows = {r["candidate"]: r for r in res.report["candidates"]}
    assert res.report["requantized"] and "Q4_1" in res.report["note"]
    q4, q8 = rows["q4_0"], rows["q8_0"]
    # measured over 20k tokens: Q4_0 0.29 mean KLD / 69% top-1; Q8_0 0.005 / 95%
    assert q4["kld_mean"] > 0.1 and q4["refused"].startswith("mean KLD")
    assert q8["kld_mean"] < 0.02 and q8["top1_agreement"] > 0.85 and q8["chosen"]
    assert q8["score"] is not None and rows["source"]["score"] is not None
    assert res.model_id == "smollm2-135m-instruct-q8_0"
    q = [{"role": "user", "content": "What is the capital of France?"}]
    with slmkit.load(slmkit.DEFAULT_MODEL, store=own_store, n_ctx=512) as m:
        assert m.id == res.model_id
        assert "Paris" in m.chat(q, max_tokens=24, temperature=0).text
    with slmkit.load(res.source, store=own_store, n_ctx=512) as m:
        assert m.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
