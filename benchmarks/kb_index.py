"""Vector index for knowledge bases at 100k chunks: usearch (HNSW, what `slm kb` uses) vs
sqlite-vec (exact KNN inside SQLite) vs exact search in numpy, plus SQLite FTS5 (BM25) for
the keyword half. Build time, disk, query latency p50/p95 (one query at a time) and recall@10
against exact search.

Run: .venv/bin/python benchmarks/kb_index.py [--n 100000] [--queries 300]
Needs `pip install sqlite-vec` for the sqlite-vec column (skipped without it), and
`pysqlite3-binary` where Python's own sqlite3 cannot load extensions (pyenv builds).
`--cache FILE.npz` keeps the embeddings for a rerun.

The chunks are real text embedded with the built-in MiniLM (int8 ONNX): SST-2, Banking77 and
SMS sentences and CNN/DailyMail and QMSum paragraphs from the store's datasets, in that order
until --n; the queries are other held-out texts (SST-2 validation, Banking77 test).
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from slmkit.catalog.store import Store
from slmkit.runtime.vector_index import new_index
from slmkit.tasks.data import dataset_file
from slmkit.tasks.embed import load_embedder


def texts(n: int) -> list[str]:
    out: list[str] = []
    sources = [
        ("sst2", "train.jsonl", "text"),
        ("banking77", "train.jsonl", "text"),
        ("sms_spam", "train.jsonl", "text"),
        ("cnn_dailymail", "validation_1000.jsonl", "document"),
        ("qmsum", "general_summaries.jsonl", "document"),
    ]
    for name, file, field in sources:
        for line in dataset_file(name, file).read_text().splitlines():
            value = json.loads(line)[field]
            parts = (
                [p for p in value.split("\n") if len(p.split()) >= 4]
                if field == "document"
                else [value]
            )
            out.extend(parts)
            if len(out) >= n:
                return out[:n]
    return out


def queries(n: int) -> list[str]:
    rows = dataset_file("sst2", "validation.jsonl").read_text().splitlines()
    rows += dataset_file("banking77", "test.jsonl").read_text().splitlines()
    return [json.loads(r)["text"] for r in rows[:: max(1, len(rows) // n)]][:n]


def embed(emb: object, items: list[str]) -> np.ndarray:
    t0 = time.perf_counter()
    out = np.concatenate([emb.embed(items[i : i + 256]) for i in range(0, len(items), 256)])  # type: ignore[attr-defined]
    print(f"embedded {len(items)} texts in {time.perf_counter() - t0:.1f} s")
    return out.astype(np.float32)


def pct(xs: list[float]) -> tuple[float, float]:
    ms = sorted(x * 1000 for x in xs)
    return statistics.median(ms), ms[int(0.95 * (len(ms) - 1))]


def recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def run_usearch(vecs: np.ndarray, qv: np.ndarray, tmp: Path) -> dict[str, object]:
    t0 = time.perf_counter()
    index = new_index(vecs.shape[1])
    index.add(np.arange(len(vecs), dtype=np.uint64), vecs)
    build = time.perf_counter() - t0
    index.save(tmp / "v.usearch")
    lat, found = [], []
    for q in qv:
        t = time.perf_counter()
        found.append(list(index.search(q, 10)))
        lat.append(time.perf_counter() - t)
    return {
        "build_s": build,
        "disk_mb": (tmp / "v.usearch").stat().st_size / 2**20,
        "lat": lat,
        "found": found,
    }


def run_sqlite_vec(vecs: np.ndarray, qv: np.ndarray, tmp: Path) -> dict[str, object] | None:
    try:
        import sqlite_vec
    except ImportError:
        return None
    try:  # this Python's sqlite3 may be built without extension loading: pysqlite3 has it
        import pysqlite3 as vec_sqlite
    except ImportError:
        vec_sqlite = sqlite3
    db = vec_sqlite.connect(str(tmp / "vec.sqlite"))
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.enable_load_extension(False)
    t0 = time.perf_counter()
    db.execute(
        f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{vecs.shape[1]}] "
        "distance_metric=cosine)"
    )
    with db:
        db.executemany(
            "INSERT INTO v(rowid, embedding) VALUES (?, ?)",
            ((i, v.tobytes()) for i, v in enumerate(vecs)),
        )
    build = time.perf_counter() - t0
    lat, found = [], []
    sql = "SELECT rowid FROM v WHERE embedding MATCH ? AND k = 10 ORDER BY distance"
    for q in qv:
        t = time.perf_counter()
        found.append([r[0] for r in db.execute(sql, (q.tobytes(),))])
        lat.append(time.perf_counter() - t)
    db.close()
    return {
        "build_s": build,
        "disk_mb": (tmp / "vec.sqlite").stat().st_size / 2**20,
        "lat": lat,
        "found": found,
    }


def run_fts(items: list[str], qs: list[str], tmp: Path) -> dict[str, object]:
    """The keyword half exactly as `slm kb` builds and queries it (tasks/kb.py)."""
    from slmkit.tasks.kb import SCHEMA, keyword_ids

    db = sqlite3.connect(tmp / "fts.sqlite")
    db.executescript(SCHEMA)
    t0 = time.perf_counter()
    with db:
        db.executemany("INSERT INTO fts(rowid, text) VALUES (?, ?)", enumerate(items))
    build = time.perf_counter() - t0
    lat = []
    for q in qs:
        t = time.perf_counter()
        keyword_ids(db, q, 30, len(items))
        lat.append(time.perf_counter() - t)
    db.close()
    return {"build_s": build, "disk_mb": (tmp / "fts.sqlite").stat().st_size / 2**20, "lat": lat}


def run_hybrid(
    items: list[str], vecs: np.ndarray, qs: list[str], emb: object, tmp: Path
) -> dict[str, object]:
    """The whole `KnowledgeBase.query` (query embedding, both halves, fusion, rows) on a
    knowledge base holding these chunks, laid out as `slm kb` writes one."""
    from slmkit.settings import Settings
    from slmkit.tasks.kb import DB, INDEX, SCHEMA, KnowledgeBase

    store = Store(tmp / "store", Settings(home=tmp / "store"))
    folder = store.root / "kb" / "bench"
    folder.mkdir(parents=True)
    db = sqlite3.connect(folder / DB)
    db.executescript(SCHEMA)
    with db:
        db.executemany(
            "INSERT INTO chunks (id, path, start, end, text, vec) VALUES (?, 'bench', 0, ?, ?, ?)",
            ((i, len(t), t, v.tobytes()) for i, (t, v) in enumerate(zip(items, vecs, strict=True))),
        )
        db.executemany("INSERT INTO fts(rowid, text) VALUES (?, ?)", enumerate(items))
        db.execute("INSERT INTO files VALUES ('bench', '-', 0, ?)", (len(items),))
    db.close()
    index = new_index(vecs.shape[1])
    index.add(np.arange(len(vecs), dtype=np.uint64), vecs)
    index.save(folder / INDEX)
    manifest = {"name": "bench", "embedder": "minilm-int8", "chunk_tokens": 200, "overlap": 32}
    manifest |= {"dim": vecs.shape[1], "files": 1, "chunks": len(items), "updated": "-"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    lat = []
    with KnowledgeBase("bench", store=store, embedder=emb) as kb:  # type: ignore[arg-type]
        for q in qs:
            t = time.perf_counter()
            kb.query(q, 5)
            lat.append(time.perf_counter() - t)
    return {"lat": lat}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--cache", type=Path, help="embeddings saved here, reused when present")
    args = ap.parse_args()
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"CPU: {cpu}; {args.n} chunks, {args.queries} queries")
    emb = load_embedder("minilm-int8", store=Store())
    items, qs = texts(args.n), queries(args.queries)
    if args.cache and args.cache.is_file():
        saved = np.load(args.cache)
        vecs, qv = saved["vecs"], saved["qv"]
    else:
        vecs, qv = embed(emb, items), embed(emb, qs)
        if args.cache:
            np.savez(args.cache, vecs=vecs, qv=qv)
    t0 = time.perf_counter()
    truth, exact_lat = [], []
    for q in qv:
        t = time.perf_counter()
        truth.append(list(np.argsort(-(vecs @ q))[:10]))
        exact_lat.append(time.perf_counter() - t)
    print(f"exact search (numpy) ground truth in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = {
            "usearch HNSW": run_usearch(vecs, qv, tmp),
            "sqlite-vec": run_sqlite_vec(vecs, qv, tmp),
        }
        fts = run_fts(items, qs, tmp)
    print(
        f"{'index':14} {'build s':>8} {'disk MB':>8} {'p50 ms':>7} {'p95 ms':>7} {'recall@10':>9}"
    )
    for name, r in rows.items():
        if r is None:
            print(f"{name:14} (not installed)")
            continue
        p50, p95 = pct(r["lat"])  # type: ignore[arg-type]
        rec = recall(r["found"], truth)  # type: ignore[arg-type]
        print(f"{name:14} {r['build_s']:8.1f} {r['disk_mb']:8.1f} {p50:7.2f} {p95:7.2f} {rec:9.4f}")
    p50, p95 = pct(exact_lat)
    print(
        f"{'numpy exact':14} {'-':>8} {vecs.nbytes / 2**20:8.1f} {p50:7.2f} {p95:7.2f} {1.0:9.4f}"
    )
    p50, p95 = pct(fts["lat"])  # type: ignore[arg-type]
    print(
        f"{'FTS5 BM25':14} {fts['build_s']:8.1f} {fts['disk_mb']:8.1f} "
        f"{p50:7.2f} {p95:7.2f} {'-':>9}"
    )
    with tempfile.TemporaryDirectory() as d:
        p50, p95 = pct(run_hybrid(items, vecs, qs, emb, Path(d))["lat"])  # type: ignore[arg-type]
    print(
        "whole KnowledgeBase.query (embed the query, HNSW + BM25, fuse, rows): "
        f"p50 {p50:.2f} ms, p95 {p95:.2f} ms"
    )


if __name__ == "__main__":
    main()
