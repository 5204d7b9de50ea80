"""Model-free tests of measuring and choosing: the Pareto front, the cascade's calibration
and threshold, the bench matrix run against endpoints (a live slmkit server on the fake
backend, and one that never answers), resume, the report, and recommend's choice."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slmkit.bench import BenchConfig, read_cells, run_bench
from slmkit.bench.recommend import candidates, reason, record_measurements
from slmkit.bench.report import pareto, render
from slmkit.catalog.memory import fit_message
from slmkit.catalog.store import Store
from slmkit.errors import InputError, UnavailableError
from slmkit.serve import ModelProvider, ServerSettings, create_app
from slmkit.tasks.cascade import Cascade, choose_threshold, fit_temperature, scale
from slmkit.tasks.classify import Prediction
from slmkit.tasks.data import DataError
from slmkit.tasks.endpoint import Endpoint, EndpointClassifier
from tests.test_serve import LiveServer


def test_pareto_front_by_hand() -> None:
    # (latency, score): b beats a (faster, better); c is slower but best; d is dominated by b
    pts = [(100.0, 70.0), (50.0, 80.0), (400.0, 90.0), (60.0, 75.0)]
    assert pareto(pts) == [1, 2]


def test_choose_threshold_by_hand() -> None:
    conf = np.array([0.99, 0.95, 0.9, 0.7, 0.6, 0.55])
    small_ok = np.array([1, 1, 1, 0, 1, 0], dtype=bool)
    large_ok = np.array([1, 1, 1, 1, 0, 1], dtype=bool)
    c = choose_threshold(conf, small_ok, large_ok)
    # large alone 5/6; target 5/6 - 0.01. Escalating conf < 0.9 gives 1,1,1,L1,L0,L1 = 5/6
    # with half escalated; escalating only < 0.6 gives 1,1,1,0,1,1 = 5/6 with 1/6 escalated.
    assert c.threshold == 0.6 and c.escalated == pytest.approx(1 / 6)
    assert c.accuracy == pytest.approx(5 / 6) and c.reached
    unreachable = choose_threshold(conf, small_ok, large_ok, target=0.99)
    assert not unreachable.reached and unreachable.accuracy == pytest.approx(5 / 6)


def test_temperature_fixes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 400)
    right = rng.random(400) < 0.7  # 70 % right, but always 99 % sure
    pred = np.where(right, gold, 1 - gold)
    probs = np.where(np.eye(2)[pred] == 1, 0.99, 0.01)
    t = fit_temperature(probs, gold)
    assert t > 1.5
    calibrated = scale(probs, t).max(axis=1)
    assert abs(float(calibrated.mean()) - 0.7) < 0.05
    assert (scale(probs, t).argmax(axis=1) == pred).all()  # ranking kept


class Fixed:
    """A classifier answering from a table (text -> probability of 'pos')."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table, self.calls = table, 0

    def predict(self, texts: list[str]) -> list[Prediction]:
        self.calls += len(texts)
        out = []
        for t in texts:
            p = self.table[t]
            out.append(Prediction("pos" if p >= 0.5 else "neg", {"neg": 1 - p, "pos": p}))
        return out


def test_cascade_escalates_only_the_unsure() -> None:
    small = Fixed({"a": 0.97, "b": 0.6, "c": 0.1, "d": 0.45})
    large = Fixed({"a": 0.0, "b": 0.0, "c": 1.0, "d": 1.0})
    cascade = Cascade(small, large, ("neg", "pos"), threshold=0.8)
    preds = cascade.predict(["a", "b", "c", "d"])
    assert [p.escalated for p in preds] == [False, True, False, True]
    assert [p.label for p in preds] == ["pos", "neg", "neg", "pos"]
    assert [p.small_label for p in preds] == ["pos", "pos", "neg", "neg"]
    assert large.calls == 2 and cascade.stats["escalated"] == 2 and cascade.stats["n"] == 4


def test_cascade_calibration_checks_labels() -> None:
    cascade = Cascade(Fixed({"a": 0.9}), Fixed({"a": 0.9}), ("neg", "pos"))
    with pytest.raises(InputError, match="labels"):
        cascade.calibrate(["a"], ["other"])


@pytest.fixture
def fake_endpoint(fake_store: Store) -> Iterator[str]:
    provider = ModelProvider(fake_store, n_seq=2, n_ctx=2048)
    live = LiveServer(create_app(ServerSettings(), provider))
    yield f"{live.url}/v1#fake-chat"
    live.close()
    provider.close()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """Accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/v1#x"
    stop.set()
    thread.join(timeout=2)
    for s in held:
        s.close()
    srv.close()


def test_endpoint_timeout_is_a_clear_error(silent_endpoint: str) -> None:
    ep = Endpoint.parse(silent_endpoint, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(UnavailableError, match=r"did not answer within 0.5 s"):
        ep.chat("hi", 4)
    assert time.monotonic() - t0 < 5


def test_endpoint_classifier_and_timing(fake_endpoint: str) -> None:
    ep = Endpoint.parse(fake_endpoint)
    stats = ep.timed_chat("hello there", 16)
    assert stats.completion_tokens > 1 and 0 < stats.ttft_s <= stats.total_s
    clf = EndpointClassifier(ep, ["ham", "spam"], "Is it spam?")
    # the fake repeats the question back, so its answer names the label the text says
    assert clf._label("Spam.") == "spam" and clf._label("it is ham") == "ham"
    (pred,) = clf.predict(["win cash"])
    assert pred.label in ("ham", "spam") and sum(pred.probs.values()) == 1


def test_bench_matrix_over_endpoints(
    fake_endpoint: str, silent_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh process per cell; the silent endpoint fails with a timeout and the rest runs;
    a second run resumes (nothing runs again); the report embeds its plots."""
    data = tmp_path / "tiny.jsonl"
    rows = [{"text": f"free prize {i}", "label_text": "spam"} for i in range(3)]
    rows += [{"text": f"see you at {i}", "label_text": "ham"} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = BenchConfig(
        models=[silent_endpoint, fake_endpoint], tasks=[str(data)], limit=6, repeat=2, timeout=1
    )
    out = tmp_path / "bench"
    seen: list[tuple[str, int, int]] = []
    cells = run_bench(config, out, progress=lambda *a: seen.append(a))
    assert [c["status"] for c in cells] == ["failed", "ok"]
    assert "did not answer within 1 s" in cells[0]["error"]
    ok = cells[1]
    assert ok["n"] == 6 and 0 <= ok["score"] <= 100 and ok["items_per_s"] > 0
    assert ok["speed"]["runs"] == 2 and ok["speed"]["ttft_ms"]["median"] > 0
    assert seen[-1] == ("done", 2, 2)
    machine = json.loads((out / "machine.json").read_text())
    assert machine["cores"] and "versions" in machine and "load_average" in machine
    lines = (out / "cells.jsonl").read_text()
    again = run_bench(config, out)  # resumes: both cells are done
    assert (out / "cells.jsonl").read_text() == lines and len(again) == 2
    summary = render(out)
    assert "| " + fake_endpoint in summary and "did not answer" in summary
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 2
    assert len(json.loads((out / "results.json").read_text())["cells"]) == 2
    assert (out / "cells.csv").read_text().count("\n") == 3
    with (out / "cells.jsonl").open("a") as fh:
        fh.write('{"key": "torn by a kill')  # a run stopped mid-write
    assert [c["status"] for c in read_cells(out)] == ["failed", "ok"]


def test_bench_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown task 'nope'"):
        run_bench(BenchConfig(models=["http://127.0.0.1:9/v1"], tasks=["nope"]), tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no label here"}) + "\n")
    with pytest.raises(DataError, match="text\\+label_text"):
        run_bench(BenchConfig(models=["http://127.0.0.1:9/v1"], tasks=[str(bad)]), tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        run_bench(BenchConfig(models=["http://127.0.0.1:9/v1"], tasks=["gone.jsonl"]), tmp_path)
    with pytest.raises(InputError, match="holds no benchmark results"):
        render(tmp_path)


def _cell(model: str, score: float, rss: float, ips: float) -> dict[str, Any]:
    return {
        "key": f"{model} | sst2 | all cores, all RAM",
        "model": model,
        "task": "sst2",
        "status": "ok",
        "metric": "accuracy",
        "score": score,
        "peak_rss_mb": rss,
        "items_per_s": ips,
        "latency_ms_p50": 1000 / ips,
        "n": 200,
        "started": "2026-11-30T06:00:00+0000",
        "threads": None,
    }


def test_recommend_picks_by_budget(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    record_measurements(
        store,
        [
            _cell("smollm2-135m-instruct", 66.0, 450, 15.0),
            _cell("qwen2.5-coder-0.5b-instruct", 85.0, 900, 11.0),
            _cell("qwen2.5-coder-1.5b-instruct", 92.0, 2200, 6.0),
        ],
    )
    small = candidates("sst2", 1.0, store=store)
    big = candidates("sst2", 8.0, store=store)
    assert small[0].entry.id == "qwen2.5-coder-0.5b-instruct"
    assert big[0].entry.id == "qwen2.5-coder-1.5b-instruct"
    text = reason("sst2", 1.0, small)
    assert "Measured on this machine" in text and "85.0 points" in text
    assert "qwen2.5-coder-1.5b-instruct scored 92.0 but needs 2200 MB (measured)" in text
    tiny = candidates("sst2", 0.3, store=store)
    assert reason("sst2", 0.3, tiny).startswith("No model fits")
    slow = candidates("sst2", 8.0, store=store, min_items_per_s=12)
    assert slow[0].entry.id == "smollm2-135m-instruct"  # the only measured one that fast
    unmeasured = candidates("banking77", 8.0, store=store)
    assert unmeasured[0].cell is None and "Not measured" in reason("banking77", 8.0, unmeasured)


def test_fit_message(fake_store: Store) -> None:
    entry = fake_store.get("qwen2.5-coder-1.5b-instruct")
    fits, text = fit_message(entry, 2048, 8 * 2**30)
    assert fits and "fits" in text and "8.0 GB available" in text
    fits, text = fit_message(entry, 2048, 2**30)
    assert fits is False and "does NOT fit" in text


def test_bias_cells_get_their_own_table(tmp_path: Path) -> None:
    """A bias cell (flip rates, no score) is not plotted as accuracy; the report shows its
    flip rates per attribute with intervals, in HTML and Markdown."""
    from slmkit.bench import BenchConfig, check_tasks, finish
    from slmkit.evaluate.bias import probe

    check_tasks(["bias", "bias-gen"])  # matrix task names, not data files

    def predict(texts: list[str]) -> list[Prediction]:
        p = [0.9 if "Greg" in t else 0.2 for t in texts]
        return [Prediction("positive" if x > 0.5 else "negative", {"positive": x}) for x in p]

    task = {"task": "bias", "probe": "classifier", "attributes": probe(predict, "positive")}
    rec = {"key": "m|Q4|bias", "model": "m", "quant": "Q4", "task": "bias", "status": "ok"}
    rec = finish({**rec, "task_result": task}, BenchConfig(models=["m"], tasks=["bias"]))
    assert rec["metric"] == "flip_rate" and "score" not in rec
    name = rec["bias"]["name"]["flip_rate"]
    assert name > 0 and rec["bias"]["gender"]["flip_rate"] == 0
    out = tmp_path / "b"
    out.mkdir()
    (out / "cells.jsonl").write_text(json.dumps(rec) + "\n")
    summary = render(out)
    assert "Bias probes" in summary and f"| {100 * name:.1f} [" in summary
    page = (out / "report.html").read_text()
    assert "<h2>Bias probes</h2>" in page and "name flip %" in page
