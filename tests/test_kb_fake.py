"""Knowledge bases and grounded answers on the fake tier: hashed bag-of-words embeddings
(tests/fakes.py) stand in for MiniLM, the index and SQLite are the real ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from slmkit.catalog.store import Store
from slmkit.cli import cli
from slmkit.errors import DataError, InputError, KbNotFoundError
from slmkit.serve import ModelProvider, ServerSettings, create_app
from slmkit.tasks import kb as kbs
from slmkit.tasks.ask import NOT_FOUND, ask, citations
from slmkit.tasks.documents import chunk_text, read_document
from slmkit.tasks.kb import Hit, KnowledgeBase
from tests.fakes import FakeEmbedder


class CountingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        self.texts = 0

    def embed(self, texts: Any) -> np.ndarray:
        self.texts += len(texts)
        return super().embed(texts)


@pytest.fixture
def emb(monkeypatch: pytest.MonkeyPatch) -> CountingEmbedder:
    e = CountingEmbedder()
    monkeypatch.setattr(kbs, "load_embedder", lambda name, store=None, pull=False: e)
    return e


def text_pdf(text: str) -> bytes:
    """A one-page PDF whose page draws `text` (Helvetica), written by hand: pypdf reads it."""
    stream = b"BT /F1 12 Tf 20 250 Td (" + text.encode() + b") Tj ET"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 300] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "returns.md").write_text(
        "# Returns\n\nItems can be returned within thirty days of delivery for a full refund.\n\n"
        "## Damaged items\n\nPhotograph the damaged parcel and email support within two days.\n"
    )
    (d / "shipping.txt").write_text(
        "Standard shipping takes five working days.\n\nExpress shipping arrives next day.\n"
    )
    (d / "hours.html").write_text(
        "<html><head><script>alert('x')</script><style>p{}</style></head><body>"
        "<h1>Opening hours</h1><p>The warehouse opens at nine and closes at five.</p></body></html>"
    )
    (d / "faq.jsonl").write_text(
        json.dumps({"text": "Gift cards never expire and cannot be refunded."}) + "\n"
    )
    (d / "warranty.pdf").write_bytes(text_pdf("The warranty covers two years of repairs."))
    (d / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (d / "blob.txt").write_bytes(b"abc\x00\x01\x02")
    (d / "empty.md").write_text("   \n")
    (d / ".hidden.md").write_text("secret notes")
    from pypdf import PdfWriter

    w = PdfWriter()
    w.add_blank_page(width=200, height=200)
    with (d / "scan.pdf").open("wb") as f:
        w.write(f)
    return d


def test_create_reads_chunks_and_skips_with_reasons(
    fake_store: Store, emb: CountingEmbedder, docs: Path
) -> None:
    rep = kbs.create("shop", [docs], store=fake_store)
    assert sorted(Path(p).name for p in rep.added) == [
        "faq.jsonl",
        "hours.html",
        "returns.md",
        "shipping.txt",
        "warranty.pdf",
    ]
    reasons = {Path(s.path).name: s.reason for s in rep.skipped}
    assert reasons == {
        "blob.txt": "binary file",
        "empty.md": "no text",
        "logo.png": "unsupported type .png",
        "scan.pdf": "no text (a scanned PDF?)",
    }
    assert rep.files == 5 and rep.chunks == rep.chunks_added == emb.texts
    with KnowledgeBase("shop", store=fake_store, embedder=emb) as base:
        info = base.info()
        for f in info["file_list"]:
            text = read_document(Path(f["file"]))
            rows = base.db.execute(
                "SELECT start, end, text FROM chunks WHERE path = ?", (f["file"],)
            ).fetchall()
            assert rows and all(text[a:b] == t for a, b, t in rows)
        html = [t for (t,) in base.db.execute("SELECT text FROM chunks") if "warehouse" in t]
        assert html and "alert" not in html[0] and "Opening hours" in html[0]
        top = base.query("how many days to return items for a refund", k=2)
        assert Path(top[0].path).name == "returns.md" and top[0].similarity is not None
        # a word only the keyword index can match (hashed vectors share nothing with it)
        assert Path(base.query("expire", k=1)[0].path).name == "faq.jsonl"
        assert Path(base.query("warranty repairs", k=1)[0].path).name == "warranty.pdf"
    assert [m["name"] for m in kbs.list_kbs(fake_store)] == ["shop"]


def test_headings_start_chunks_and_long_paragraphs_overlap() -> None:
    def spans(t: str) -> list[tuple[int, int]]:
        import re

        return [m.span() for m in re.finditer(r"\S+", t)]

    text = "# A\n\nshort one.\n\n# B\n\n" + " ".join(f"w{i}" for i in range(50))
    chunks = chunk_text("f", text, spans, max_tokens=20, overlap=5)
    assert chunks[0].text == "# A\n\nshort one."
    assert chunks[1].text.startswith("# B")
    words = [c.text.split() for c in chunks[2:]]
    assert all(len(w) <= 20 for w in words)
    assert words[0][-5:] == words[1][:5]  # the overlap
    assert words[-1][-1] == "w49"
    with pytest.raises(DataError, match="overlap"):
        chunk_text("f", text, spans, max_tokens=10, overlap=10)
    # a long paragraph of short lines (a transcript) is packed at its line boundaries
    turns = "\n".join(f"Speaker {i % 3}: point number {i} made here ." for i in range(30))
    packed = chunk_text("t", turns, spans, max_tokens=20, overlap=5)
    assert all(c.text.startswith("Speaker") and c.text.endswith(".") for c in packed)
    assert all(len(c.text.split()) <= 20 for c in packed) and len(packed) == 15
    assert "".join(c.text.replace("\n", "") for c in packed) == turns.replace("\n", "")


def test_add_is_incremental_and_rm_removes(
    fake_store: Store, emb: CountingEmbedder, docs: Path
) -> None:
    kbs.create("shop", [docs], store=fake_store)
    before = emb.texts
    again = kbs.add("shop", [docs], store=fake_store)
    assert len(again.unchanged) == 5 and again.chunks_added == 0 and emb.texts == before
    (docs / "shipping.txt").write_text("Shipping is now free and takes seven days via pigeon.\n")
    changed = kbs.add("shop", [docs / "shipping.txt"], store=fake_store)
    assert [Path(p).name for p in changed.replaced] == ["shipping.txt"]
    with KnowledgeBase("shop", store=fake_store, embedder=emb) as base:
        texts = [t for (t,) in base.db.execute("SELECT text FROM chunks")]
        assert any("pigeon" in t for t in texts) and not any("Express" in t for t in texts)
        assert Path(base.query("pigeon", k=1)[0].path).name == "shipping.txt"
    gone = kbs.remove("shop", [docs / "faq.jsonl", docs / "nope.md"], store=fake_store)
    assert [Path(p).name for p in gone.removed] == ["faq.jsonl"]
    assert gone.skipped[0].reason == "not in the knowledge base"
    assert gone.files == 4
    with pytest.raises(DataError, match="would hold no documents"):
        kbs.remove("shop", list(docs.iterdir()), store=fake_store)
    assert kbs.list_kbs(fake_store)[0]["files"] == 4  # the failed change left it whole
    assert kbs.remove_kb("shop", fake_store) and kbs.list_kbs(fake_store) == []
    assert not kbs.remove_kb("shop", fake_store)


def test_bad_input(fake_store: Store, emb: CountingEmbedder, docs: Path) -> None:
    for bad in ("../etc", "a/b", "", "Big", "x" * 65):
        with pytest.raises(InputError, match="knowledge base names"):
            kbs.create(bad, [docs], store=fake_store)
    with pytest.raises(DataError, match="no documents.*unsupported type"):
        kbs.create("empty", [docs / "logo.png"], store=fake_store)
    with pytest.raises(DataError, match="no such file or folder"):
        kbs.create("empty", [docs / "missing"], store=fake_store)
    assert kbs.list_kbs(fake_store) == []
    assert not list((fake_store.root / "kb").glob(".staging-*"))
    with pytest.raises(KbNotFoundError, match="no knowledge base 'nope'"):
        KnowledgeBase("nope", store=fake_store, embedder=emb)
    kbs.create("shop", [docs], store=fake_store)
    with pytest.raises(InputError, match="exists"):
        kbs.create("shop", [docs], store=fake_store)
    with KnowledgeBase("shop", store=fake_store, embedder=emb) as base:
        with pytest.raises(InputError, match="50000 characters"):
            base.query("x" * 50_000)
        with pytest.raises(InputError, match="empty"):
            base.query("  ")
        kbs.remove_kb("shop", fake_store)  # deleted while open: the open query still works
        assert base.query("refund", k=1)


def test_a_killed_create_leaves_nothing_listed(fake_store: Store, docs: Path) -> None:
    code = f"""
import time, sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from tests.fakes import FakeEmbedder
from slmkit.catalog.store import Store
from slmkit.settings import Settings
from slmkit.tasks import kb
class Slow(FakeEmbedder):
    def embed(self, texts):
        print("embedding", flush=True); time.sleep(0.3); return super().embed(texts)
root = {str(fake_store.root)!r}
kb.create("shop", [{str(docs)!r}], store=Store(__import__("pathlib").Path(root),
          Settings(home=root)), embedder=Slow())
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "embedding"
    time.sleep(0.4)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert kbs.list_kbs(fake_store) == []
    assert list((fake_store.root / "kb").glob(".staging-*"))  # the leftover, not listed
    kbs.create("shop", [docs], store=fake_store, embedder=FakeEmbedder())
    assert [m["name"] for m in kbs.list_kbs(fake_store)] == ["shop"]
    assert not list((fake_store.root / "kb").glob(".staging-*"))  # cleaned by the next change


def _hit(n: int, text: str) -> Hit:
    return Hit(n, f"/d/f{n}.md", 0, len(text), text, 0.1, 0.5)


def test_citations_by_number_or_by_words() -> None:
    hits = [_hit(1, "Refunds take thirty days."), _hit(2, "Shipping takes five working days.")]
    cited = citations("Shipping takes five days [2]. Refunds take a month [1][2] [9].", hits)
    assert [(c.n, c.path, c.inferred) for c in cited] == [
        (2, "/d/f2.md", False),
        (1, "/d/f1.md", False),
    ]
    inferred = citations("Standard shipping takes five working days here.", hits)
    assert [(c.n, c.inferred) for c in inferred] == [(2, True)]
    assert citations("I do not know.", hits) == []


def test_ask_refuses_without_running_the_model(
    fake_store: Store, emb: CountingEmbedder, docs: Path, fake_model: Any
) -> None:
    kbs.create("shop", [docs], store=fake_store)
    far = ask("zebra quantum violin", kb="shop", model=fake_model, store=fake_store)
    assert far.refused and far.text == NOT_FOUND and far.excerpts == [] and far.confidence < 0.25
    near = ask(
        "How many days to return items for a refund?",
        kb="shop",
        model=fake_model,
        store=fake_store,
    )
    assert near.excerpts and Path(near.excerpts[0].path).name == "returns.md"
    assert near.confidence >= 0.25 and near.text


@pytest.fixture
def client(fake_store: Store, emb: CountingEmbedder, docs: Path) -> Iterator[TestClient]:
    kbs.create("shop", [docs], store=fake_store)
    provider = ModelProvider(fake_store, n_seq=2, n_ctx=2048)
    with TestClient(create_app(ServerSettings(), provider)) as c:
        yield c
    provider.close()


def test_server_query_and_grounded_chat(client: TestClient) -> None:
    r = client.post("/v1/kb/shop/query", json={"query": "return items refund", "k": 2})
    assert r.status_code == 200, r.text
    assert Path(r.json()["data"][0]["file"]).name == "returns.md"
    assert client.post("/v1/kb/nope/query", json={"query": "x"}).status_code == 404
    assert client.post("/v1/kb/..%2Fetc/query", json={"query": "x"}).status_code in (400, 404)
    assert client.post("/v1/kb/shop/query", json={"query": "x" * 5000}).status_code == 400
    ask_body = {"model": "fake-chat", "kb": "shop", "max_tokens": 12, "temperature": 0}
    near = client.post(
        "/v1/chat/completions",
        json={**ask_body, "messages": [{"role": "user", "content": "return items refund days"}]},
    )
    assert near.status_code == 200, near.text
    kb = near.json()["kb"]
    assert kb["name"] == "shop" and Path(kb["excerpts"][0]["file"]).name == "returns.md"
    far = client.post(
        "/v1/chat/completions",
        json={**ask_body, "messages": [{"role": "user", "content": "zebra quantum violin"}]},
    )
    assert far.json()["choices"][0]["message"]["content"] == NOT_FOUND
    assert far.json()["kb"]["refused"] is True
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            **ask_body,
            "stream": True,
            "messages": [{"role": "user", "content": "return refund"}],
        },
    ) as s:
        events = [ln[6:] for ln in s.iter_lines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["object"] == "chat.completion.kb" and last["kb"]["excerpts"]
    assert json.loads(events[0])["object"] == "chat.completion.chunk"
    missing = client.post(
        "/v1/chat/completions",
        json={**ask_body, "kb": "nope", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert missing.status_code == 404 and "no knowledge base 'nope'" in missing.text
    huge = client.post(
        "/v1/chat/completions",
        json={**ask_body, "messages": [{"role": "user", "content": "refund " * 8000}]},
    )
    assert huge.status_code == 400 and "characters" in huge.text


def test_cli(fake_store: Store, emb: CountingEmbedder, docs: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    run = CliRunner().invoke
    made = run(cli, ["kb", "create", "shop", str(docs), "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output.splitlines()[0])["files"] == 5
    listed = run(cli, ["kb", "list"])
    assert listed.output.startswith("shop") and "5 files" in listed.output
    info = run(cli, ["kb", "info", "shop", "--json"])
    assert len(json.loads(info.output)["file_list"]) == 5
    q = run(cli, ["kb", "query", "shop", "return items refund", "-k", "1"])
    assert q.exit_code == 0 and "returns.md" in q.output
    bad = run(cli, ["kb", "create", "../x", str(docs)])
    assert bad.exit_code == 1 and bad.output.startswith("error:") and "Traceback" not in bad.output
    chat = run(cli, ["chat", "fake-chat", "--kb", "shop"], input="zebra quantum violin\n")
    assert chat.exit_code == 0 and NOT_FOUND in chat.output, chat.output
    gone = run(cli, ["kb", "rm", "shop"])
    assert gone.exit_code == 0 and run(cli, ["kb", "list", "--json"]).output.strip() == "[]"
    again = run(cli, ["kb", "rm", "shop"])
    assert again.exit_code == 1 and again.output.startswith("error: no knowledge base 'shop'")


def test_qmsum_qa_gold_spans_match_the_evidence() -> None:
    """The span convention (inclusive turn indices, turn_offsets) gives back each row's
    evidence text exactly, on every answerable row of qmsum_qa."""
    from slmkit.evaluate.kbqa import _rows, gold_spans

    rows, docs = _rows(None)
    answerable = [r for r in rows if not r["unanswerable"]]
    assert len(answerable) == 237 and len(rows) == 267
    for r in answerable:
        text = docs[r["meeting"]]["document"]
        assert "\n".join(text[a:b] for a, b in gold_spans(r, docs[r["meeting"]])) == r["evidence"]


def test_refusal_figures() -> None:
    from slmkit.evaluate.kbqa import _refusals

    # 2 of 3 unanswerable refused, 1 of 4 answerable wrongly refused
    got = _refusals([True, False, False, False], [True, True, False])
    assert got == {"precision": round(2 / 3, 4), "recall": round(2 / 3, 4), "f1": round(2 / 3, 4)}
    assert _refusals([False], [False]) == {"precision": None, "recall": 0.0, "f1": 0.0}


def test_refusal_threshold_is_chosen_on_other_meetings() -> None:
    from slmkit.evaluate.kbqa import calibrate

    scored = [  # tune: meetings a and c; test: b and d
        ("a", False, 0.6),
        ("a", True, 0.2),
        ("c", False, 0.5),
        ("c", True, 0.1),
        ("b", False, 0.45),
        ("b", True, 0.3),
        ("d", False, 0.7),
        ("d", True, 0.15),
    ]
    got = calibrate(scored, floor=0.4)
    assert got is not None and got["threshold"] == 0.35 and got["tune"]["f1"] == 1.0
    assert got["test"]["f1"] == 1.0 and got["test_rows"] == 4
    assert got["test_at_default"]["recall"] == 1.0 and got["test_at_default"]["precision"] == 1.0
    assert calibrate([("a", False, 0.5)], floor=0.25) is None  # nothing unanswerable to tune on


def test_qmsum_qa_retrieval_only_runs(emb: CountingEmbedder, monkeypatch: Any) -> None:
    from slmkit.evaluate import kbqa

    monkeypatch.setattr("slmkit.tasks.embed.load_embedder", lambda *a, **kw: emb)
    res = kbqa.evaluate_qmsum_qa(model=None, kb_mode="meeting", k=5, limit=4)
    assert res["n"] == 4 and 0.0 <= res["retrieval_recall_at_5"] <= 1.0
    assert res["similarity_answerable_mean"] is not None and "answer_rougeL" not in res


def test_the_index_then_onnxruntime_imports_in_one_process() -> None:
    """usearch's module loaded before onnxruntime's crashed the process at the latter's
    import; runtime/vector_index.py loads onnxruntime first."""
    code = "from slmkit.runtime.vector_index import new_index; new_index(4); import onnxruntime"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_qmsum_qa_baselines_whole_meeting_and_question_alone(
    fake_store: Store, monkeypatch: Any
) -> None:
    """`--answer-from whole`: every part of the meeting is asked about the question, then the
    notes answer it; `none`: the question alone. Refusals count the same way as with a KB."""
    from slmkit.evaluate import kbqa
    from slmkit.tasks.ask import NOT_FOUND
    from tests.fakes import FakeBackend

    meeting = " ".join(f"Speaker {i % 3}: we talked about the budget item {i}." for i in range(300))
    docs = {"m1": {"id": "m1", "document": meeting, "turn_offsets": [0]}}
    rows = [
        {
            "meeting": "m1",
            "query": "What was said about the budget?",
            "unanswerable": False,
            "answer": "They talked about the budget.",
            "relevant_spans": [[0, 0]],
        },
        {
            "meeting": "m1",
            "query": "Who won the cup?",
            "unanswerable": True,
            "answer": "",
            "relevant_spans": [],
        },
    ]
    monkeypatch.setattr(kbqa, "_rows", lambda limit: (rows, docs))
    monkeypatch.setenv("SLMKIT_HOME", str(fake_store.root))
    prompts: list[str] = []

    def reply(prompt: str) -> str:
        if not prompts or prompts[-1] != prompt:
            prompts.append(prompt)
        return NOT_FOUND if "cup" in prompt else "They talked about the budget."

    monkeypatch.setattr(FakeBackend, "reply", staticmethod(reply))
    whole = kbqa.evaluate_qmsum_qa(model="fake-chat", method="whole", n_ctx=2048)
    parts = [p for p in prompts if "this part of a longer text" in p]
    assert len(parts) >= 4 * 2  # a 16k-byte meeting in 2,048-token windows, for both rows
    assert all("Question: " in p for p in parts) and "budget item 299" in "".join(parts)
    assert whole["method"] == "whole" and whole["n"] == 2 and whole["answer_rougeL"] == 1.0
    assert whole["rougeL"] == 1.0 and "retrieval_recall_at_5" not in whole
    assert whole["refusal"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    prompts.clear()
    alone = kbqa.evaluate_qmsum_qa(model="fake-chat", method="none")
    assert alone["refusal"]["recall"] == 1.0 and alone["answer_rougeL"] == 1.0
    assert len(prompts) == 2 and not any("budget item" in p for p in prompts)
    with pytest.raises(InputError, match="needs a model"):
        kbqa.evaluate_qmsum_qa(model=None, method="none")


def test_rerank_lets_the_model_pick_the_excerpts(
    fake_store: Store, emb: CountingEmbedder, docs: Path, fake_model: Any, monkeypatch: Any
) -> None:
    from slmkit.tasks.ask import RERANK_POOL, ask, rerank, retrieve
    from tests.fakes import FakeBackend

    kbs.create("shop", [docs], store=fake_store)
    with KnowledgeBase("shop", store=fake_store, embedder=emb) as base:
        plain, _ = retrieve("refund returned days", base, 1, -1.0)
        seen: list[int] = []

        def prefers_shipping(pairs: list[tuple[str, str]]) -> list[float]:
            seen.append(len(pairs))
            return [-1.0 if "Express shipping" in c else -9.0 for c, _ in pairs]

        picked, _ = retrieve("refund returned days", base, 1, -1.0, prefers_shipping)
        assert Path(plain[0].path).name == "returns.md"
        assert Path(picked[0].path).name == "shipping.txt" and seen == [RERANK_POOL]
        assert rerank("q", plain, prefers_shipping, 3) == plain  # one candidate: no scoring
        # through the model's own log-likelihood (the fake's score: a rule on the text)
        monkeypatch.setattr(
            FakeBackend, "score", staticmethod(lambda c, x: -0.1 if "Damaged" in c else -3.0)
        )
        a = ask("refund returned days", kb=base, model=fake_model, k=1, rerank=True)
        assert a.excerpts[0].text.startswith("## Damaged items")


def test_server_rerank_goes_through_the_engine(client: TestClient, monkeypatch: Any) -> None:
    from slmkit.engine import batch

    calls: list[int] = []
    real = batch.score_many

    def counting(model: Any, pairs: Any, **kw: Any) -> Any:
        calls.append(len(pairs))
        return real(model, pairs, **kw)

    monkeypatch.setattr(batch, "score_many", counting)
    body = {
        "model": "fake-chat",
        "kb": "shop",
        "kb_k": 2,
        "kb_rerank": True,
        "max_tokens": 8,
        "temperature": 0,
        "messages": [{"role": "user", "content": "return items refund days"}],
    }
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert len(r.json()["kb"]["excerpts"]) == 2 and calls and calls[0] > 2
    plain = {**body, "kb_rerank": False}
    wide = client.post("/v1/chat/completions", json={**plain, "kb_widen": 1}).json()["kb"]
    narrow = client.post("/v1/chat/completions", json=plain).json()["kb"]
    w, n = wide["excerpts"][0], narrow["excerpts"][0]  # returns.md: its two chunks as one
    assert w["file"] == n["file"] and w["start"] <= n["start"] and w["end"] > n["end"]
    bad = client.post("/v1/chat/completions", json={**body, "kb_widen": 9})
    assert bad.status_code == 400


def test_widen_shows_neighbouring_chunks_once(
    fake_store: Store, emb: CountingEmbedder, tmp_path: Path
) -> None:
    doc = tmp_path / "minutes.txt"
    text = "\n".join(
        f"Speaker {i}: item {i} is about topic{i} and more words here." for i in range(60)
    )
    doc.write_text(text)
    kbs.create("minutes", [doc], store=fake_store, chunk_tokens=40, overlap=8)
    with KnowledgeBase("minutes", store=fake_store, embedder=emb) as base:
        hits = base.query("topic30", 3)
        wide = base.widen(hits, 2)
        assert len(wide) <= len(hits) and wide[0].chunk_id == hits[0].chunk_id
        assert wide[0].start < hits[0].start and wide[0].end > hits[0].end
        for w in wide:  # the file's own text, overlaps read once
            assert " ".join(w.text.split()) == " ".join(text[w.start : w.end].split())
        spans = sorted((w.start, w.end) for w in wide)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # no overlap
        assert base.widen(hits, 0) == hits
