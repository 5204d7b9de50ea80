"""`slm kb` (knowledge bases of your documents) and `slm ask` (grounded answers from one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from slmkit.cli.base import cli, fail_cleanly, human, item_progress, options


@cli.group()
def kb() -> None:
    """Knowledge bases of your own documents (text, Markdown, HTML, PDF, JSONL): create, add,
    rm, list, info, query. `slm ask NAME "question"` answers from one, with citations."""


def _report(rep: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rep.as_dict()))
        return
    click.echo(
        f"{rep.name}: {len(rep.added)} added, {len(rep.replaced)} replaced, "
        f"{len(rep.unchanged)} unchanged, {len(rep.removed)} removed, {len(rep.skipped)} "
        f"skipped; {rep.files} files, {rep.chunks} chunks ({rep.chunks_added} new) "
        f"in {rep.seconds} s"
    )
    for s in rep.skipped:
        click.echo(f"skipped {s.path}: {s.reason}", err=True)


FILES = click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
JSON = click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")


@kb.command(name="create")
@click.argument("name")
@FILES
@click.option(
    "--embedder",
    default="minilm-int8",
    show_default=True,
    help="minilm-int8, minilm-fp32, or slm:MODEL_ID.",
)
@click.option("--chunk-tokens", type=click.IntRange(32, 256), default=200, show_default=True)
@click.option("--overlap", type=click.IntRange(0, 128), default=32, show_default=True)
@click.option("--force", is_flag=True, help="Replace a knowledge base of that name.")
@JSON
@fail_cleanly
def kb_create(
    name: str,
    files: tuple[Path, ...],
    embedder: str,
    chunk_tokens: int,
    overlap: int,
    force: bool,
    as_json: bool,
) -> None:
    """Make knowledge base NAME from FILES and folders (walked; unsupported files are named
    and skipped)."""
    from slmkit.tasks import kb as kbs

    with item_progress("embedding chunks", 0) as advance:
        rep = kbs.create(
            name,
            files,
            embedder=embedder,
            chunk_tokens=chunk_tokens,
            overlap=overlap,
            force=force,
            progress=advance,
        )
    _report(rep, as_json)


@kb.command(name="add")
@click.argument("name")
@FILES
@JSON
@fail_cleanly
def kb_add(name: str, files: tuple[Path, ...], as_json: bool) -> None:
    """Add FILES to NAME: unchanged files cost a hash, changed ones replace their chunks."""
    from slmkit.tasks import kb as kbs

    with item_progress("embedding chunks", 0) as advance:
        rep = kbs.add(name, files, progress=advance)
    _report(rep, as_json)


@kb.command(name="rm")
@click.argument("name")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@JSON
@fail_cleanly
def kb_rm(name: str, files: tuple[Path, ...], as_json: bool) -> None:
    """Remove FILES from NAME; without FILES, remove the knowledge base itself."""
    from slmkit.tasks import kb as kbs

    if files:
        _report(kbs.remove(name, files), as_json)
        return
    gone = kbs.remove_kb(name)
    if as_json:
        click.echo(json.dumps({"name": name, "removed": gone}))
    elif not gone:
        from slmkit.errors import KbNotFoundError

        raise KbNotFoundError(f"no knowledge base {name!r} (`slm kb list` shows them)")
    else:
        click.echo(f"removed knowledge base {name}")


@kb.command(name="list")
@JSON
@fail_cleanly
def kb_list(as_json: bool) -> None:
    """The knowledge bases in the store."""
    from slmkit.tasks.kb import list_kbs

    rows = list_kbs()
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no knowledge bases yet: slm kb create NAME FILES...")
    for m in rows:
        click.echo(
            f"{m['name']:24} {m['files']:>6} files {m['chunks']:>8} chunks  "
            f"{m['embedder']}  updated {m['updated']}"
        )


@kb.command(name="info")
@click.argument("name")
@JSON
@fail_cleanly
def kb_info(name: str, as_json: bool) -> None:
    """A knowledge base's settings, size and files."""
    from slmkit.tasks.kb import KnowledgeBase

    with KnowledgeBase(name) as base:
        info = base.info()
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(
        f"{info['name']}: {info['files']} files, {info['chunks']} chunks, "
        f"{human(info['disk_bytes'])} on disk; embedder {info['embedder']}, chunks of "
        f"{info['chunk_tokens']} tokens overlapping {info['overlap']}; updated {info['updated']}"
    )
    for f in info["file_list"]:
        click.echo(f"  {f['file']}  {f['chunks']} chunks  {human(f['bytes'])}")


@kb.command(name="query")
@click.argument("name")
@click.argument("text")
@click.option("-k", type=click.IntRange(1, 50), default=5, show_default=True)
@JSON
@fail_cleanly
def kb_query(name: str, text: str, k: int, as_json: bool) -> None:
    """Retrieval only: the K best chunks of NAME for TEXT (hybrid: vectors + BM25)."""
    from slmkit.tasks.kb import KnowledgeBase

    with KnowledgeBase(name) as base:
        hits = base.query(text, k)
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hits]))
        return
    for i, h in enumerate(hits, 1):
        sim = "-" if h.similarity is None else f"{h.similarity:.2f}"
        click.echo(f"[{i}] {h.path}:{h.start}-{h.end} (similarity {sim})")
        click.echo("    " + " ".join(h.text.split())[:300])


ASK_OPTIONS = [
    click.option("--model", "model_id", default=None, help="The model that answers."),
    click.option("-k", type=click.IntRange(1, 20), default=4, show_default=True, help="Excerpts."),
    click.option(
        "--min-similarity",
        type=click.FloatRange(-1, 1),
        default=None,
        help="Below this best retrieval similarity the answer is the refusal (default 0.25).",
    ),
    click.option("--max-tokens", type=click.IntRange(1, 4096), default=256, show_default=True),
    click.option(
        "--rerank",
        is_flag=True,
        help="Retrieve 3k candidates and let the model's own log-likelihood pick the k shown.",
    ),
    click.option(
        "--widen",
        type=click.IntRange(0, 5),
        default=0,
        show_default=True,
        help="Show each excerpt with N neighbouring chunks on either side.",
    ),
]


@cli.command(name="ask")
@click.argument("name")
@click.argument("question")
@options(ASK_OPTIONS)
@JSON
@fail_cleanly
def ask_cmd(
    name: str, question: str, model_id: str | None, max_tokens: int, as_json: bool, **how: Any
) -> None:
    """Answer QUESTION from knowledge base NAME alone, citing its excerpts ([1], [2]); says
    so when the documents do not hold the answer. Streams the answer, then its sources."""
    from slmkit.catalog.builtin import DEFAULT_MODEL
    from slmkit.loading import load
    from slmkit.options import GenerationOptions
    from slmkit.tasks.ask import MIN_SIMILARITY, Answer, ask_stream

    opts = GenerationOptions(temperature=0, max_tokens=max_tokens)
    if how["min_similarity"] is None:
        how["min_similarity"] = MIN_SIMILARITY
    with load(model_id or DEFAULT_MODEL) as model:
        for item in ask_stream(question, kb=name, model=model, options=opts, **how):
            if isinstance(item, Answer):
                answer = item
            elif not as_json:
                click.echo(item, nl=False)
    if as_json:
        click.echo(json.dumps(answer.as_dict()))
        return
    click.echo()
    for c in answer.citations:
        matched = " (matched by its words)" if c.inferred else ""
        click.echo(f"[{c.n}] {c.path}:{c.start}-{c.end}{matched}")
