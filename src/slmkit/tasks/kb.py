"""Knowledge bases: a user's documents chunked, embedded and indexed in the store
(`<store>/kb/NAME/`), for retrieval (`KnowledgeBase.query`) and grounded answers
(tasks/ask.py).

On disk, one folder per knowledge base:
- `kb.sqlite`: the files (path, sha256, size), the chunks (file, character span, text, the
  embedding as float32) and an FTS5 table over the chunk texts (SQLite's BM25 ranking, the
  keyword half of hybrid retrieval);
- `vectors.usearch`: an HNSW index (usearch) of the embeddings, keyed by chunk id, for the
  vector half (docs/benchmarks.md compares it with exact search and sqlite-vec at 100k chunks);
- `manifest.json`: name, embedder, chunking, counts.

Every change (create, add, rm) is made on a copy in a locked staging folder that is renamed
into place with its manifest, as the model store does: a killed `slm kb add` leaves the old
knowledge base whole and nothing half-written listed. Re-adding an unchanged file (same
sha256) costs a hash; a changed file's chunks are replaced.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.catalog.store import (
    ID_RE,
    MANIFEST,
    Store,
    clean_dir,
    drop_staging,
    file_sha256,
    new_staging,
    write_manifest_and_promote,
)
from slmkit.errors import DataError, InputError, KbNotFoundError
from slmkit.tasks.documents import Chunk, Skipped, chunk_text, find_files, read_document
from slmkit.tasks.embed import Embedder, load_embedder

DB, INDEX = "kb.sqlite", "vectors.usearch"
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009)
MAX_QUERY_CHARS = 4000
SCHEMA = """
CREATE TABLE files (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER, chunks INTEGER);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, path TEXT NOT NULL, start INTEGER, end INTEGER,
                     text TEXT NOT NULL, vec BLOB NOT NULL);
CREATE INDEX chunks_path ON chunks(path);
CREATE VIRTUAL TABLE fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE fts_vocab USING fts5vocab(fts, 'row');
"""
KEYWORDS = 8  # the query's rarest words searched (common ones match everything, slowly)
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk: where it is, its text, and how it ranked."""

    chunk_id: int
    path: str
    start: int
    end: int
    text: str
    score: float  # reciprocal-rank fusion of the two rankings
    similarity: float | None  # cosine similarity to the query (None: keyword match only)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.chunk_id,
            "file": self.path,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "score": round(self.score, 5),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
        }


@dataclass
class BuildReport:
    """What a create/add/rm did."""

    name: str
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks_added: int = 0
    chunks: int = 0
    files: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "skipped"}
        out["skipped"] = [{"file": s.path, "reason": s.reason} for s in self.skipped]
        return out


def keyword_ids(db: sqlite3.Connection, text: str, n: int, total: int) -> list[int]:
    """BM25's best n chunks for the query's rarest words: words are looked up in the FTS5
    vocabulary, those in over a tenth of the chunks are dropped (at 100k chunks an OR over
    every word of a sentence takes ~140 ms at p95, docs/benchmarks.md), at most KEYWORDS kept."""
    words = list(dict.fromkeys(re.findall(r"\w+", text.lower())))[:256]
    if not words:
        return []
    marks = ",".join("?" * len(words))
    df = dict(db.execute(f"SELECT term, doc FROM fts_vocab WHERE term IN ({marks})", words))
    known = sorted((w for w in words if df.get(w)), key=lambda w: df[w])
    rare = [w for w in known if df[w] <= max(50, total // 10)] or known[:2]
    if not rare:
        return []
    match = " OR ".join(f'"{w}"' for w in rare[:KEYWORDS])
    sql = "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT ?"
    return [r[0] for r in db.execute(sql, (match, n))]


def kb_root(store: Store) -> Path:
    return store.root / "kb"


def check_name(name: str) -> str:
    if not ID_RE.match(name):
        raise InputError(
            f"knowledge base names are 1-64 of a-z 0-9 . _ - starting with a letter or digit, "
            f"not {name!r}"
        )
    return name


def list_kbs(store: Store | None = None) -> list[dict[str, Any]]:
    """The manifests of the knowledge bases in the store (only whole ones: see module doc)."""
    import json

    root = kb_root(store or Store())
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST).is_file():
            out.append(json.loads((d / MANIFEST).read_text()))
    return out


def remove_kb(name: str, store: Store | None = None) -> bool:
    folder = kb_root(store or Store()) / check_name(name)
    if not (folder / MANIFEST).is_file():
        return False
    gone = folder.with_name(f".old-{name}-rm")
    folder.rename(gone)
    shutil.rmtree(gone, ignore_errors=True)
    return True


def _joined(hit: Hit, pieces: Sequence[tuple[int, int, str]]) -> Hit:
    """`hit` stretched over `pieces` (start, end, text of spans of one file, text ==
    file[start:end]): overlaps are read once; a gap between pieces (the separators chunking
    dropped) becomes as many newlines, so offsets in the text stay offsets in the file."""
    parts, end = [], None
    for start, stop, text in sorted(pieces):
        if end is None or start >= end:
            parts.append(text if end is None else "\n" * (start - end) + text)
        elif stop > end:
            parts.append(text[end - start :])
        end = stop if end is None else max(end, stop)
    first = min(p[0] for p in pieces)
    return Hit(
        hit.chunk_id, hit.path, first, end or hit.end, "".join(parts), hit.score, hit.similarity
    )


def _spans(embedder: Embedder) -> Callable[[str], list[tuple[int, int]]]:
    fn = getattr(embedder, "token_spans", None)
    if callable(fn):
        return fn
    return lambda text: [m.span() for m in re.finditer(r"\S+", text)]


class KnowledgeBase:
    """An existing knowledge base, opened for queries."""

    def __init__(
        self, name: str, *, store: Store | None = None, embedder: Embedder | None = None
    ) -> None:
        import json

        from slmkit.runtime.vector_index import load_index

        self.store = store or Store()
        self.name = check_name(name)
        self.folder = kb_root(self.store) / name
        try:
            self.manifest: dict[str, Any] = json.loads((self.folder / MANIFEST).read_text())
        except (OSError, ValueError):
            known = ", ".join(m["name"] for m in list_kbs(self.store)) or "none yet"
            raise KbNotFoundError(
                f"no knowledge base {name!r} (known: {known}); make one with "
                f"`slm kb create {name} FILES...`"
            ) from None
        self.embedder = embedder or load_embedder(self.manifest["embedder"], store=self.store)
        self.db = sqlite3.connect(
            f"file:{self.folder / DB}?mode=ro", uri=True, check_same_thread=False
        )
        self.index = load_index(self.folder / INDEX, int(self.manifest["dim"]))

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def query(self, text: str, k: int = 5, *, candidates: int = 30) -> list[Hit]:
        """The k best chunks for `text`: the vector and keyword rankings (each `candidates`
        long) fused by reciprocal rank."""
        if not text.strip():
            raise InputError("the query is empty")
        if len(text) > MAX_QUERY_CHARS:
            raise InputError(f"the query is {len(text)} characters; at most {MAX_QUERY_CHARS}")
        if k < 1:
            raise InputError("k must be at least 1")
        vec = np.asarray(self.embedder.embed([text]), dtype=np.float32)[0]
        try:
            by_vec = self.index.search(vec, candidates)
            by_word = self._keyword(text, candidates)
            fused: dict[int, float] = {}
            for ranking in (list(by_vec), by_word):
                for rank, cid in enumerate(ranking):
                    fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank + 1)
            best = sorted(fused, key=lambda c: -fused[c])[:k]
            rows = self._rows(best)
        except sqlite3.Error as e:
            raise KbNotFoundError(f"knowledge base {self.name!r} went away ({e})") from None
        return [Hit(cid, *rows[cid], fused[cid], by_vec.get(cid)) for cid in best if cid in rows]

    def widen(self, hits: list[Hit], n: int) -> list[Hit]:
        """Each hit with up to `n` neighbouring chunks of its file on either side, as one
        excerpt (retrieval finds the small chunk, the model reads its surroundings); hits
        that come to overlap are merged into the first. Same order, maybe fewer."""
        if n < 1:
            return hits
        out: list[Hit] = []
        for h in hits:
            rows = self.db.execute(
                "SELECT start, end, text FROM chunks WHERE path = ? AND id IN ("
                " SELECT id FROM (SELECT id FROM chunks WHERE path = ? AND start < ?"
                "  ORDER BY start DESC LIMIT ?)"
                " UNION SELECT id FROM (SELECT id FROM chunks WHERE path = ? AND start >= ?"
                "  ORDER BY start LIMIT ?)) ORDER BY start",
                (h.path, h.path, h.start, n, h.path, h.start, n + 1),
            ).fetchall()
            wide = _joined(h, rows)
            near = [
                o for o in out if o.path == h.path and o.start < wide.end and wide.start < o.end
            ]
            if not near:
                out.append(wide)
                continue
            # merged into the first it overlaps, with any other it now spans (they do not
            # overlap each other, so each of them overlaps `wide`)
            pieces = [(o.start, o.end, o.text) for o in (*near, wide)]
            at = out.index(near[0])
            out[at] = _joined(near[0], pieces)
            out = [o for i, o in enumerate(out) if i == at or all(o is not n for n in near)]
        return out

    def _keyword(self, text: str, n: int) -> list[int]:
        return keyword_ids(self.db, text, n, int(self.manifest.get("chunks", 0)))

    def _rows(self, ids: Sequence[int]) -> dict[int, tuple[str, int, int, str]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        sql = f"SELECT id, path, start, end, text FROM chunks WHERE id IN ({marks})"
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in self.db.execute(sql, list(ids))}

    def info(self) -> dict[str, Any]:
        files = [
            {"file": p, "sha256": s, "bytes": b, "chunks": c}
            for p, s, b, c in self.db.execute("SELECT path, sha256, size, chunks FROM files")
        ]
        disk = sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())
        return {**self.manifest, "disk_bytes": disk, "file_list": files}


def create(
    name: str,
    inputs: Iterable[str | Path],
    *,
    store: Store | None = None,
    embedder: str | Embedder = "minilm-int8",
    chunk_tokens: int = 200,
    overlap: int = 32,
    force: bool = False,
    progress: Progress | None = None,
) -> BuildReport:
    """A new knowledge base from files and folders (see tasks/documents.py for the types)."""
    store = store or Store()
    final = kb_root(store) / check_name(name)
    if (final / MANIFEST).is_file() and not force:
        raise InputError(f"knowledge base {name!r} exists: `slm kb add {name} ...`, or --force")
    emb = load_embedder(embedder, store=store) if isinstance(embedder, str) else embedder
    settings = {"embedder": emb.name, "chunk_tokens": chunk_tokens, "overlap": overlap}
    return _change(store, name, None, settings, emb, list(inputs), [], progress)


def add(
    name: str,
    inputs: Iterable[str | Path],
    *,
    store: Store | None = None,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Add files (unchanged ones cost a hash; changed ones replace their chunks)."""
    with KnowledgeBase(name, store=store, embedder=embedder) as kb:
        settings = {k: kb.manifest[k] for k in ("embedder", "chunk_tokens", "overlap")}
        return _change(kb.store, name, kb.folder, settings, kb.embedder, list(inputs), [], progress)


def remove(
    name: str,
    paths: Iterable[str | Path],
    *,
    store: Store | None = None,
    embedder: Embedder | None = None,
) -> BuildReport:
    """Remove files (by the path given when added, or any path to the same file)."""
    with KnowledgeBase(name, store=store, embedder=embedder) as kb:
        settings = {k: kb.manifest[k] for k in ("embedder", "chunk_tokens", "overlap")}
        gone = [str(Path(p).expanduser().resolve()) for p in paths]
        return _change(kb.store, name, kb.folder, settings, kb.embedder, [], gone, None)


def _change(
    store: Store,
    name: str,
    base: Path | None,
    settings: dict[str, Any],
    emb: Embedder,
    inputs: list[str | Path],
    gone: list[str],
    progress: Progress | None,
) -> BuildReport:
    """The copy-on-write step every change goes through (module docstring)."""
    from slmkit.runtime.vector_index import load_index

    t0 = time.perf_counter()
    root = kb_root(store)
    root.mkdir(parents=True, exist_ok=True)
    clean_dir(root)
    report = BuildReport(name)
    files, report.skipped = find_files(inputs)
    staging = new_staging(root, name)
    try:
        db = sqlite3.connect(staging / DB)
        if base is None:
            db.executescript(SCHEMA)
            index = None
        else:
            db.close()
            shutil.copy2(base / DB, staging / DB)
            db = sqlite3.connect(staging / DB)
            index = load_index(base / INDEX, int(settings.get("dim", 0)) or _dim(db))
        with db:
            index = _apply(db, index, emb, files, gone, settings, report, progress)
        report.files = db.execute("SELECT count(*) FROM files").fetchone()[0]
        report.chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        db.close()
        if report.files == 0 or index is None:
            raise DataError(_nothing(name, report))
        index.save(staging / INDEX)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        manifest = {
            "name": name,
            **settings,
            "dim": index.ndim,
            "files": report.files,
            "chunks": report.chunks,
            "updated": now,
        }
        write_manifest_and_promote(staging, manifest, root / name)
    except BaseException:
        drop_staging(staging)
        raise
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def _nothing(name: str, report: BuildReport) -> str:
    why = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:5])
    return f"knowledge base {name!r} would hold no documents" + (f" ({why})" if why else "")


def _dim(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT vec FROM chunks LIMIT 1").fetchone()
    return len(row[0]) // 4 if row else 0


def _apply(
    db: sqlite3.Connection,
    index: Any,
    emb: Embedder,
    files: list[Path],
    gone: list[str],
    settings: dict[str, Any],
    report: BuildReport,
    progress: Progress | None,
) -> Any:
    """Inside one transaction: drop removed files, add new and changed ones."""
    for path in gone:
        if _drop(db, index, path):
            report.removed.append(path)
        else:
            report.skipped.append(Skipped(path, "not in the knowledge base"))
    for f in files:
        path, sha = str(f), file_sha256(f)
        old = db.execute("SELECT sha256 FROM files WHERE path = ?", (path,)).fetchone()
        if old is not None and old[0] == sha:
            report.unchanged.append(path)
            continue
        try:
            chunks = chunk_text(
                path,
                read_document(f),
                _spans(emb),
                max_tokens=int(settings["chunk_tokens"]),
                overlap=int(settings["overlap"]),
            )
        except DataError as e:
            report.skipped.append(Skipped(path, str(e)))
            continue
        vecs = _embed(emb, chunks, progress)
        if index is None:
            from slmkit.runtime.vector_index import new_index

            index = new_index(vecs.shape[1])
        if old is not None:
            _drop(db, index, path)
        (report.replaced if old is not None else report.added).append(path)
        _insert(db, index, chunks, vecs)
        db.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?)", (path, sha, f.stat().st_size, len(chunks))
        )
        report.chunks_added += len(chunks)
    return index


def _embed(emb: Embedder, chunks: list[Chunk], progress: Progress | None) -> np.ndarray:
    out = []
    for i in range(0, len(chunks), 64):
        batch = chunks[i : i + 64]
        out.append(np.asarray(emb.embed([c.text for c in batch]), dtype=np.float32))
        if progress is not None:
            progress(len(batch))
    return np.concatenate(out)


def _insert(db: sqlite3.Connection, index: Any, chunks: list[Chunk], vecs: np.ndarray) -> None:
    ids = []
    for c, v in zip(chunks, vecs, strict=True):
        cur = db.execute(
            "INSERT INTO chunks (path, start, end, text, vec) VALUES (?, ?, ?, ?, ?)",
            (c.path, c.start, c.end, c.text, v.astype(np.float32).tobytes()),
        )
        cid = int(cur.lastrowid or 0)
        db.execute("INSERT INTO fts (rowid, text) VALUES (?, ?)", (cid, c.text))
        ids.append(cid)
    index.add(np.array(ids, dtype=np.uint64), vecs)


def _drop(db: sqlite3.Connection, index: Any, path: str) -> bool:
    ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE path = ?", (path,))]
    found = db.execute("DELETE FROM files WHERE path = ?", (path,)).rowcount > 0
    if ids:
        db.executemany("DELETE FROM fts WHERE rowid = ?", [(i,) for i in ids])
        db.execute("DELETE FROM chunks WHERE path = ?", (path,))
        if index is not None:
            index.remove(np.array(ids, dtype=np.uint64))
    return found
