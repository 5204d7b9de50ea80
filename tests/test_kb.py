"""Knowledge bases with the real MiniLM (int8 ONNX) and grounded answers from SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest

import slmkit
from slmkit.catalog.store import Store
from slmkit.settings import Settings
from slmkit.tasks import kb as kbs
from slmkit.tasks.ask import NOT_FOUND, ask
from slmkit.tasks.embed import Embedder, load_embedder
from slmkit.tasks.kb import KnowledgeBase

DOCS = {
    "passwords.md": "# Passwords\n\nTo reset your password, open Settings, choose Security and "
    "press 'Send reset link'. The link in the email is valid for 30 minutes.",
    "billing.md": "# Billing\n\nInvoices are issued on the first day of each month. You can pay "
    "by card or bank transfer; late payments incur a 2% fee.",
    "shipping.md": "# Shipping\n\nOrders leave our warehouse within two working days. Standard "
    "delivery takes three to five days; express delivery arrives the next day.",
    "returns.md": "# Returns\n\nUnused products may be sent back within 30 days for a full "
    "refund. Print the prepaid label from your order page.",
    "accounts.md": "# Closing an account\n\nTo delete your account, contact support from the "
    "address you registered with. Data is erased within 14 days.",
}
QUESTIONS = {  # paraphrases: the answer's file shares few words with them
    "I forgot my login secret, how do I get a new one?": "passwords.md",
    "When do I get my monthly bill?": "billing.md",
    "How long until my parcel arrives?": "shipping.md",
    "Can I get my money back for something I bought?": "returns.md",
    "How do I remove my profile and personal data?": "accounts.md",
}


@pytest.fixture(scope="module")
def minilm(real_store: Store) -> Embedder:
    return load_embedder("minilm-int8", store=real_store, pull=True)


@pytest.fixture
def support(tmp_path: Path, minilm: Embedder) -> Store:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    store = Store(tmp_path / "store", Settings(home=tmp_path / "store"))
    rep = kbs.create("support", [docs], store=store, embedder=minilm)
    assert rep.files == 5 and rep.skipped == []
    return store


def test_retrieval_finds_paraphrased_answers(support: Store, minilm: Embedder) -> None:
    with KnowledgeBase("support", store=support, embedder=minilm) as base:
        right = sum(Path(base.query(q, k=1)[0].path).name == f for q, f in QUESTIONS.items())
        assert right >= 4, right
        off = base.query("Who won the football world cup in 1966?", k=1)[0]
        on = base.query("how do I reset my password", k=1)[0]
        assert on.similarity is not None and off.similarity is not None
        assert on.similarity > 0.5 > off.similarity


def test_chunks_fit_the_encoder(tmp_path: Path, minilm: Embedder) -> None:
    long = tmp_path / "long.md"
    long.write_text("# Manual\n\n" + " ".join(f"Step {i}: turn the dial." for i in range(400)))
    store = Store(tmp_path / "s", Settings(home=tmp_path / "s"))
    kbs.create("manual", [long], store=store, embedder=minilm, chunk_tokens=128, overlap=16)
    spans = minilm.token_spans  # type: ignore[attr-defined]
    with KnowledgeBase("manual", store=store, embedder=minilm) as base:
        texts = [t for (t,) in base.db.execute("SELECT text FROM chunks")]
    assert len(texts) > 10 and all(len(spans(t)) <= 128 for t in texts)


def test_grounded_answer_cites_or_refuses(
    support: Store, minilm: Embedder, smollm: slmkit.Model
) -> None:
    with KnowledgeBase("support", store=support, embedder=minilm) as base:
        a = ask("How do I reset my password?", kb=base, model=smollm)
        assert not a.refused and a.text and a.text != NOT_FOUND
        assert Path(a.excerpts[0].path).name == "passwords.md"
        assert a.citations and Path(a.citations[0].path).name == "passwords.md", a.text
        no = ask("Who won the football world cup in 1966?", kb=base, model=smollm)
        assert no.refused and no.text == NOT_FOUND and no.citations == []
