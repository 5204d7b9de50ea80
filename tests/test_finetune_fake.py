"""Fine-tuning on tiny random-weight encoders built from a config (no real weights): the run,
its registration and lineage, resume after an interruption, LoRA, distillation on the fake
backend, bad input refused before any work, and the result used by classify, eval and serve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from slmkit.catalog.store import Store
from slmkit.errors import DataError, InputError, LabelError, ModelFormatError
from slmkit.settings import Settings
from slmkit.train import FinetuneConfig, finetune
from slmkit.train.loop import Progress, bucket_batches
from tests.tiny_models import sentiment_rows, tiny_encoder, write_jsonl

# A random tiny encoder must learn its embeddings too (the default freezes them, for real bases).
FAST = dict(
    epochs=4, lr=3e-3, batch_size=16, eval_every=10, checkpoint_every=10, freeze_embeddings=False
)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store", Settings(home=tmp_path / "store", n_threads=1))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", sentiment_rows(300, seed=1))  # type: ignore[arg-type]


def _cfg(data: Path, base: Path, out: str = "tiny-ft", **kw: Any) -> FinetuneConfig:
    return FinetuneConfig(data=str(data), base=str(base), out=out, **{**FAST, **kw})


def _store_is_clean(store: Store, model_id: str) -> None:
    models = store.root / "models"
    assert not store.model_dir(model_id).exists()
    assert not [p for p in models.iterdir() if p.name.startswith(".")] if models.is_dir() else True
    assert not (store.root / "runs" / model_id).exists()


def test_finetune_learns_registers_with_lineage_and_classifies(
    store: Store, data: Path, tiny_bert: Path
) -> None:
    from slmkit.tasks.finetuned import load_classifier

    seen: list[Progress] = []
    res = finetune(_cfg(data, tiny_bert), store=store, progress=seen.append)
    assert res.metrics["held_accuracy"] >= 0.9  # the synthetic labels are learnable
    assert seen and seen[-1].step == res.metrics["steps"] and seen[-1].rows_per_s > 0
    entry = store.get("tiny-ft")
    assert entry.kind == "classifier" and entry.labels == ("negative", "positive")
    assert entry.lineage is not None
    assert entry.lineage["base"] == str(tiny_bert) and entry.lineage["method"] == "full"
    assert entry.lineage["data_sha256"] and entry.lineage["metrics"]["held_accuracy"] > 0.9
    assert not (store.root / "runs" / "tiny-ft").exists()  # checkpoints go once registered
    preds = load_classifier("tiny-ft", store).predict(["a great day", "so awful and dull"])
    assert [p.label for p in preds] == ["positive", "negative"]
    assert abs(sum(preds[0].probs.values()) - 1) < 1e-5


def test_resume_after_interruption_matches_an_uninterrupted_run(
    tmp_path: Path, data: Path, tiny_bert: Path
) -> None:
    full_store = Store(tmp_path / "a", Settings(home=tmp_path / "a", n_threads=1))
    full = finetune(_cfg(data, tiny_bert), store=full_store)

    store = Store(tmp_path / "b", Settings(home=tmp_path / "b", n_threads=1))

    def kill_at_25(p: Progress) -> None:
        if p.step == 25:  # checkpoints at 10 and 20: five steps are lost and redone
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(_cfg(data, tiny_bert), store=store, progress=kill_at_25)
    assert store.path("tiny-ft") is None  # nothing registered by a killed run
    with pytest.raises(InputError, match="interrupted run .*--resume"):
        finetune(_cfg(data, tiny_bert), store=store)  # its checkpoint is not thrown away
    with pytest.raises(InputError, match="already exists|same settings"):
        finetune(_cfg(data, tiny_bert, seed=5), store=store, resume=True)
    resumed = finetune(_cfg(data, tiny_bert), store=store, resume=True)
    assert resumed.metrics["steps"] == full.metrics["steps"]
    assert resumed.metrics["held_accuracy"] == full.metrics["held_accuracy"]
    from safetensors.numpy import load_file

    a = load_file(str(full_store.model_dir("tiny-ft") / "model.safetensors"))
    b = load_file(str(store.model_dir("tiny-ft") / "model.safetensors"))
    assert all(np.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_resume_without_a_run_is_a_clear_error(store: Store, data: Path, tiny_bert: Path) -> None:
    with pytest.raises(InputError, match="nothing to resume"):
        finetune(_cfg(data, tiny_bert), store=store, resume=True)


def test_time_limit_stops_and_still_registers_the_best(
    store: Store, data: Path, tiny_bert: Path
) -> None:
    cfg = _cfg(data, tiny_bert, epochs=500, patience=10_000)
    res = finetune(cfg, store=store, max_minutes=0.02)
    assert res.metrics["stopped"] == "time limit"
    assert res.metrics["steps"] < 500 * 17
    assert store.get("tiny-ft").kind == "classifier"


def test_lora_merges_into_a_plain_model(store: Store, data: Path, tiny_bert: Path) -> None:
    from slmkit.tasks.finetuned import load_classifier

    res = finetune(_cfg(data, tiny_bert, method="lora", epochs=1), store=store)
    files = {p.name for p in store.model_dir("tiny-ft").iterdir()}
    assert "adapter_config.json" not in files and "model.safetensors" in files
    assert res.lineage["method"] == "lora"
    assert len(load_classifier("tiny-ft", store).predict(["fine"])) == 1


def test_bucketed_batches_cover_every_row_once_and_follow_the_seed() -> None:
    lengths = np.random.default_rng(0).integers(1, 100, size=1000)
    batches = bucket_batches(lengths, 32, seed=3, epoch=1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 10  # rows of similar length share a batch (random batches: ~95)
    again = bucket_batches(lengths, 32, seed=3, epoch=1)
    assert all((x == y).all() for x, y in zip(batches, again, strict=True))
    other = bucket_batches(lengths, 32, seed=3, epoch=2)
    assert any((x != y).any() for x, y in zip(batches, other, strict=False))


# --- bad input: a clear error before any long work, nothing left in the store ----------------


@pytest.mark.parametrize(
    "rows, err, match",
    [
        ([{"text": f"t{i}", "label_text": "a"} for i in range(20)], LabelError, "two classes"),
        ([{"text": "x", "label_text": "a"}, {"text": "y"}], DataError, ":2: missing field"),
        ([{"text": "x", "label_text": "a"}, {"text": " ", "label_text": "b"}], DataError, ":2"),
    ],
    ids=["one-class", "label-missing", "empty-text"],
)
def test_bad_data_is_refused_up_front(
    store: Store, tmp_path: Path, tiny_bert: Path, rows: Any, err: type, match: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(err, match=match):
        finetune(_cfg(path, tiny_bert), store=store)
    _store_is_clean(store, "tiny-ft")


def test_a_base_that_is_not_an_encoder_is_refused(
    fake_store: Store, data: Path, tmp_path: Path
) -> None:
    # (a chat model in the store is a causal base: see test_a_causal_base_refuses_...)
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelFormatError, match="not an encoder"):
        finetune(_cfg(data, llama), store=fake_store)
    _store_is_clean(fake_store, "tiny-ft")


def test_bad_output_ids_are_refused(store: Store, data: Path, tiny_bert: Path) -> None:
    for bad, match in (("Bad Id", "invalid model id"), ("smollm2-135m-instruct", "catalog")):
        with pytest.raises(InputError, match=match):
            finetune(_cfg(data, tiny_bert, out=bad), store=store)
    finetune(_cfg(data, tiny_bert, epochs=1), store=store)
    with pytest.raises(InputError, match="already exists"):
        finetune(_cfg(data, tiny_bert, epochs=1), store=store)
    finetune(_cfg(data, tiny_bert, epochs=1), store=store, force=True)


def test_a_missing_teacher_fails_before_training(store: Store, data: Path, tiny_bert: Path) -> None:
    with pytest.raises(InputError, match="unknown model"):
        finetune(_cfg(data, tiny_bert, teacher="no-such-model"), store=store)
    _store_is_clean(store, "tiny-ft")


# --- distillation on the fake backend --------------------------------------------------------


def test_teacher_labels_are_probabilities_and_cached(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmkit.train import distill

    texts = [f"text number {i}" for i in range(200)]
    probs = distill.teacher_probs(
        "fake-chat", texts, ("no", "yes"), instruction="Is it?", store=fake_store
    )
    assert probs.shape == (200, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)

    def no_load(*a: Any, **k: Any) -> None:
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr("slmkit.loading.load", no_load)
    again = distill.teacher_probs(
        "fake-chat", texts, ("no", "yes"), instruction="Is it?", store=fake_store
    )
    assert np.array_equal(probs, again)


def test_distillation_trains_on_teacher_and_unlabeled_texts(
    fake_store: Store, data: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    extra = write_jsonl(tmp_path / "extra.jsonl", [{"text": f"more {i}"} for i in range(40)])
    cfg = _cfg(data, tiny_bert, teacher="fake-chat", unlabeled=str(extra), epochs=1)
    res = finetune(cfg, store=fake_store)
    assert res.metrics["train_rows"] == 270 + 40
    assert res.lineage["method"] == "distill-full" and res.lineage["teacher"] == "fake-chat"


# --- the result in the CLI and the server ----------------------------------------------------


@pytest.fixture
def registered(store: Store, data: Path, tiny_bert: Path) -> Iterator[Store]:
    finetune(_cfg(data, tiny_bert), store=store)
    yield store


def test_cli_finetune_classify_and_eval(
    store: Store, data: Path, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmkit.cli import cli

    monkeypatch.setenv("SLMKIT_HOME", str(store.root))
    monkeypatch.setenv("SLMKIT_N_THREADS", "1")
    r = CliRunner().invoke(
        cli,
        ["finetune", str(data), "--base", str(tiny_bert), "--out", "cli-ft", "--epochs", "4"]
        + ["--lr", "3e-3", "--batch-size", "16", "--eval-every", "10", "--no-freeze-embeddings"]
        + ["--json"],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["model_id"] == "cli-ft" and out["metrics"]["held_accuracy"] >= 0.9
    r = CliRunner().invoke(cli, ["classify", "--model", "cli-ft", "a lovely bright day"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["label"] == "positive"
    r = CliRunner().invoke(cli, ["classify", "--model", "cli-ft", "--labels", "spam,ham", "x"])
    assert r.exit_code == 1 and "trained on labels negative, positive" in r.output
    test = write_jsonl(tmp_path / "test.jsonl", sentiment_rows(60, seed=9))  # type: ignore[arg-type]
    r = CliRunner().invoke(cli, ["eval", str(test), "--model", "cli-ft", "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert ev["method"] == "finetuned" and ev["accuracy"] >= 0.9
    r = CliRunner().invoke(cli, ["finetune", str(data), "--out", "x", "--epochs", "-1"])
    assert r.exit_code == 1 and "--epochs" in r.output


def test_server_classifies_with_a_finetuned_model(registered: Store) -> None:
    from fastapi.testclient import TestClient

    from slmkit.serve import ModelProvider, ServerSettings, create_app

    provider = ModelProvider(registered)
    with TestClient(create_app(ServerSettings(), provider)) as client:
        r = client.post("/v1/classify", json={"model": "tiny-ft", "input": ["superb", "grim"]})
        assert r.status_code == 200, r.text
        assert [d["label"] for d in r.json()["data"]] == ["positive", "negative"]
        r = client.post(
            "/v1/classify", json={"model": "tiny-ft", "input": "x", "labels": ["a", "b"]}
        )
        assert r.status_code == 400 and "trained on labels" in r.text
    provider.close()


def test_mobilebert_random_weights_classify_through_the_backend(tmp_path: Path) -> None:
    from slmkit.tasks.finetuned import EncoderClassifier

    folder = tiny_encoder(tmp_path / "mb", "mobilebert", labels=("neg", "pos"))
    clf = EncoderClassifier.from_path(folder, n_threads=1)
    preds = clf.predict(["a great day", "so dull"])
    assert clf.runner.__class__.__name__ == "TorchEncoder"
    assert [set(p.probs) for p in preds] == [{"neg", "pos"}] * 2
    assert all(abs(sum(p.probs.values()) - 1) < 1e-5 for p in preds)


# --- a causal base: instruction/response rows (the fake chat model stands in for the GGUF) --
def test_causal_defaults_follow_the_base_kind() -> None:
    enc = FinetuneConfig(data="sms_spam", out="x").resolved(causal=False)
    assert (enc.method, enc.batch_size, enc.lr, enc.max_length) == ("full", 32, 1e-4, 128)
    dec = FinetuneConfig(data="extract_sms", out="x").resolved(causal=True)
    assert (dec.method, dec.batch_size, dec.lr, dec.max_length) == ("lora", 8, 2e-4, 512)
    assert dec.eval_every == dec.checkpoint_every == 50
    given = FinetuneConfig(data="x.jsonl", out="x", lr=1e-3, eval_every=7).resolved(causal=True)
    assert (given.lr, given.eval_every, given.checkpoint_every) == (1e-3, 7, 7)
    with pytest.raises(InputError, match="512"):
        FinetuneConfig(data="sms_spam", out="x", max_length=1024).resolved(causal=False)


def test_pairs_from_a_file_and_extract_sms(tmp_path: Path) -> None:
    from slmkit.train.causal import load_pairs

    rows = [{"prompt": f"say {i}", "response": str(i)} for i in range(20)]
    data = load_pairs(str(write_jsonl(tmp_path / "p.jsonl", rows)), holdout=0.1, seed=0, limit=None)
    assert (len(data.prompts), len(data.held_prompts)) == (18, 2)
    pairs = set(
        zip(data.prompts + data.held_prompts, data.responses + data.held_responses, strict=True)
    )
    assert pairs == {(r["prompt"], r["response"]) for r in rows}
    sms = load_pairs("extract_sms", holdout=0.1, seed=0, limit=50)
    answer = json.loads(sms.responses[0])
    assert set(answer) == {"spam", "phone_number", "mentions_prize"}
    assert sms.prompts[0].startswith("Extract the fields") and "Text: " in sms.prompts[0]


def test_classification_data_becomes_the_zero_shot_question(fake_model: Any) -> None:
    from slmkit.tasks.classify import LikelihoodClassifier
    from slmkit.train.causal import load_pairs

    data = load_pairs("sms_spam", holdout=0.1, seed=0, limit=60)
    assert set(data.responses) == {"ham", "spam"} and len(data.held_prompts) == 6
    clf = LikelihoodClassifier(
        fake_model, ("ham", "spam"), instruction="Is this SMS message spam or ham (not spam)?"
    )
    text = data.prompts[0].rsplit("Text: ", 1)[1]
    asked = fake_model.format_chat([{"role": "user", "content": data.prompts[0]}])
    assert clf.prompt(text) == asked  # what `slm eval sms_spam --model ID` will ask
    asked_as = load_pairs("sms_spam", holdout=0.1, seed=0, limit=20, instruction="Junk?")
    assert all(p.startswith("Junk?\nAnswer with one of: ham, spam.") for p in asked_as.prompts)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"prompt": "a", "answer": "b"}] * 5, "response"),
        ([{"prompt": "a", "response": " "}] * 5, "empty field 'response'"),
    ],
)
def test_bad_pair_files_are_refused(tmp_path: Path, rows: list[dict[str, str]], match: str) -> None:
    from slmkit.train.causal import load_pairs

    with pytest.raises(DataError, match=match):
        load_pairs(str(write_jsonl(tmp_path / "p.jsonl", rows)), holdout=0.1, seed=0, limit=None)


def test_pairs_are_tokenized_through_the_chat_template(fake_model: Any) -> None:
    from slmkit.train.causal import encode_pairs

    prompts, responses = ["hi there", "x" * 400, "hello"], ["yes", "no", "maybe"]
    enc, dropped = encode_pairs(fake_model, prompts, responses, 200)
    assert dropped == 1 and len(enc.ids) == 2
    heads = [
        fake_model.backend.tokenize(fake_model.format_chat([{"role": "user", "content": p}]))
        for p in ("hi there", "hello")
    ]
    assert [r[:s] for r, s in zip(enc.ids, enc.starts, strict=True)] == heads
    # the shared prefix: everything up to where the two prompts' texts differ ("hi" / "hel")
    assert enc.ids[0][: enc.prefix] == enc.ids[1][: enc.prefix]
    assert enc.ids[0][enc.prefix] != enc.ids[1][enc.prefix]
    labels = enc.batch(np.array([0]))["labels"][0].tolist()
    start = enc.starts[0] - enc.prefix
    assert labels[:start] == [-100] * start  # the loss counts the response only
    assert bytes(labels[start:]) == b"yes"


def test_shared_prefix_gives_the_same_loss_and_gradients_as_full_rows() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from slmkit.train.causal import Encoded, loss, shared_prefix

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    common = list(range(1, 21))
    ids = [common + [30 + i] * (3 + i) + [50, 51, 52 + i][: 1 + i % 3] for i in range(4)]
    starts = [len(common) + 3 + i for i in range(4)]
    shared = Encoded(ids, starts, shared_prefix(ids, starts))
    assert shared.prefix == 20

    def reference() -> torch.Tensor:
        """Every full row through the model, the output head at every position."""
        b = Encoded(ids, starts, 0).batch(np.arange(4))
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        pred, gold = out[:, :-1], b["labels"][:, 1:]
        return torch.nn.functional.cross_entropy(
            pred.reshape(-1, pred.shape[-1]), gold.reshape(-1), ignore_index=-100
        )

    grads = []
    for run in (reference, lambda: loss(model, Encoded(ids, starts, 0), np.arange(4))):
        model.zero_grad()
        value = run()
        value.backward()
        grads.append((value.item(), [p.grad.clone() for p in model.parameters()]))
    model.zero_grad()
    value = loss(model, shared, np.arange(4))
    value.backward()
    grads.append((value.item(), [p.grad.clone() for p in model.parameters()]))
    (a, ga), *rest = grads
    for b, gb in rest:  # the head on answer positions only, then the shared prefix too
        assert abs(a - b) < 1e-5
        for x, y in zip(ga, gb, strict=True):
            assert torch.allclose(x, y, atol=1e-5)


def test_a_causal_base_refuses_wrong_data_and_distillation(fake_store: Store) -> None:
    with pytest.raises(DataError, match="prompt' and 'response"):
        finetune(FinetuneConfig(data="no_such_task", base="fake-chat", out="c"), store=fake_store)
    with pytest.raises(InputError, match="teacher"):
        finetune(
            FinetuneConfig(data="extract_sms", base="fake-chat", out="c", teacher="fake-chat"),
            store=fake_store,
        )
    _store_is_clean(fake_store, "c")
