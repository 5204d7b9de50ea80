"""Generation commands: run, chat and the demo tour."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click

from slmkit.catalog.builtin import DEFAULT_MODEL
from slmkit.cli.base import (
    F,
    cli,
    fail_cleanly,
    field_options,
    open_store,
    peak_rss_mb,
    pull_progress,
)
from slmkit.errors import EmptyPromptError, RuntimeFailure
from slmkit.options import GenerationOptions
from slmkit.runtime.base import Chunk, GenerationStats

# GenerationOptions' fields that are not flags: grammar and logprobs belong to the API and
# the server; --overflow is run's own choice (chat always truncates the oldest turns).
NOT_FLAGS = ("logprobs", "grammar", "overflow")
PASSED = tuple(n for n in GenerationOptions.model_fields if n not in NOT_FLAGS)


def generation_options(fn: F) -> F:
    """The flags shared by `run` and `chat`: one per GenerationOptions field (generated, so a
    flag and the option it sets cannot disagree; GenerationOptions validates the values),
    then drafting, system prompt, context and backend."""
    opts = [
        click.option(
            "--draft",
            default=None,
            metavar="MODEL",
            help="Speculative decoding with this smaller model of the same vocabulary ('auto': "
            "the catalog's draft for the model). Used only where it measurably pays.",
        ),
        click.option("--system", default=None, help='System prompt ("" for none).'),
        click.option("--n-ctx", type=int, default=None, help="Context window to load with."),
        click.option(
            "--backend",
            type=click.Choice(["llamacpp", "transformers"]),
            default=None,
            help="Run on this backend (transformers: PyTorch, the GGUF dequantized to fp32).",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return field_options(GenerationOptions, skip=NOT_FLAGS)(fn)


def _options(kw: dict[str, Any], **extra: Any) -> GenerationOptions:
    """The options the flags gave (a flag not given stays unset, so the model card's
    recommended sampling applies when no sampling flag was given)."""
    from slmkit.options import make_options

    picked = {k: kw[k] for k in PASSED if kw.get(k) is not None and kw.get(k) != ()}
    return make_options(**picked, **extra)


# The poem takes the model card's sampling plus a mild repetition penalty: without it the
# small default model loops on one line for most of its 160 tokens (docs/benchmarks.md).
DEMO_POEM: dict[str, Any] = {"repeat_penalty": 1.2}


def demo_poem_options(model: Any) -> dict[str, Any]:
    return {**model.entry.generation_defaults, **DEMO_POEM}


@cli.command()
@click.argument("model_id")
@click.argument("prompt", required=False)
@generation_options
@click.option("--raw", is_flag=True, help="Complete the text as-is (no chat template).")
@click.option("--overflow", type=click.Choice(["error", "truncate"]), default="error")
@click.option("--stats/--no-stats", default=False, help="Print tokens/s and memory to stderr.")
@fail_cleanly
def run(
    model_id: str, prompt: str | None, raw: bool, overflow: str, stats: bool, **kw: Any
) -> None:
    """Stream a reply to PROMPT (read from stdin when omitted)."""
    from slmkit.loading import load

    if prompt is None:
        if sys.stdin.isatty():
            raise click.UsageError("give a PROMPT argument or pipe text on stdin")
        prompt = sys.stdin.read()
    opts = _options(kw, overflow=overflow)
    if not prompt.strip():
        raise EmptyPromptError("the prompt is empty")
    model = load(
        model_id, n_ctx=kw.get("n_ctx"), pull=False, backend=kw.get("backend"), draft=kw["draft"]
    )
    if raw:
        chunks = model.stream(prompt, options=opts)
    else:
        chunks = model.stream(
            [{"role": "user", "content": prompt}], system=kw["system"], options=opts
        )
    final = _echo_stream(chunks)
    if final.dropped_tokens:
        click.echo(
            f"note: dropped {final.dropped_tokens} prompt tokens to fit the context", err=True
        )
    if stats:
        _echo_stats(final)


def _echo_stream(chunks: Iterator[Chunk]) -> GenerationStats:
    out = sys.stdout
    for c in chunks:
        if c.text:
            out.write(c.text)
            out.flush()
        if c.stats is not None:
            out.write("\n")
            return c.stats
    raise RuntimeFailure("generation ended without a final chunk")


def _echo_stats(s: GenerationStats) -> None:
    drafts = ""
    if s.drafted_tokens:
        rate = s.accepted_tokens / s.drafted_tokens
        drafts = f", drafts kept {s.accepted_tokens}/{s.drafted_tokens} ({rate:.0%})"
    click.echo(
        f"[{s.prompt_tokens} prompt tokens in {s.prompt_s:.2f}s, {s.completion_tokens} tokens "
        f"at {s.tokens_per_s:.1f} tok/s, first token {s.ttft_s * 1000:.0f} ms, "
        f"peak RSS {peak_rss_mb():.0f} MB{drafts}]",
        err=True,
    )


@cli.command()
@click.argument("model_id")
@generation_options
@click.option("--kb", default=None, help="Answer from this knowledge base (slm kb create).")
@fail_cleanly
def chat(model_id: str, kb: str | None, **kw: Any) -> None:
    """Interactive multi-turn chat. Commands: /reset, /system TEXT, /exit. With --kb NAME each
    question is answered from that knowledge base alone, with its sources (docs/kb.md)."""
    from slmkit.loading import load

    opts = _options(kw, overflow="truncate")
    model = load(
        model_id, n_ctx=kw.get("n_ctx"), pull=False, backend=kw.get("backend"), draft=kw["draft"]
    )
    system: str | None = kw["system"]
    history: list[dict[str, str]] = []
    click.echo(
        f"chatting with {model.id} (context {model.n_ctx}); /reset, /system TEXT, /exit", err=True
    )
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            click.echo("", err=True)
            return
        cmd = line.strip()
        if not cmd:
            continue
        if cmd in ("/exit", "/quit"):
            return
        if cmd == "/reset":
            history = []
            click.echo("(history cleared)", err=True)
            continue
        if cmd.startswith("/system"):
            system = cmd.removeprefix("/system").strip()
            history = []
            click.echo(f"(system prompt set to {system!r}; history cleared)", err=True)
            continue
        if kb is not None:
            _kb_turn(line, kb, model, opts)
            continue
        history.append({"role": "user", "content": line})
        reply: list[str] = []
        stats = _echo_stream(_tee(model.stream(history, system=system, options=opts), reply))
        history.append({"role": "assistant", "content": "".join(reply)})
        if stats is not None and stats.dropped_tokens:
            click.echo(f"(dropped {stats.dropped_tokens} tokens of old turns to fit)", err=True)


def _kb_turn(question: str, kb: str, model: Any, opts: Any) -> None:
    """One grounded answer, streamed, then its sources (each question stands alone)."""
    from slmkit.tasks.ask import Answer, ask_stream

    answer = None
    for item in ask_stream(question, kb=kb, model=model, options=opts):
        if isinstance(item, Answer):
            answer = item
        else:
            click.echo(item, nl=False)
    click.echo()
    for c in answer.citations if answer else []:
        click.echo(f"  [{c.n}] {c.path}:{c.start}-{c.end}", err=True)


def _tee(chunks: Iterator[Chunk], sink: list[str]) -> Iterator[Chunk]:
    for c in chunks:
        sink.append(c.text)
        yield c


@cli.command()
@click.option("--model", "model_id", default=None, help="Model to tour (default model if omitted).")
@fail_cleanly
def demo(model_id: str | None) -> None:
    """A short tour: pull the default model, answer a question, stream a reply, show speed."""
    from slmkit.loading import load

    model_id = model_id or DEFAULT_MODEL
    store = open_store()
    if store.path(model_id) is None:
        with pull_progress(f"pull {model_id}") as progress:
            store.pull(model_id, progress=progress)
    model = load(model_id, pull=False)
    question = "What is the capital of France?"
    click.echo(f"Q: {question}")
    answer = model.chat(question, temperature=0, max_tokens=64)
    click.echo(f"A: {answer.text.strip()}\n")
    click.echo("Streaming: write a short poem about the sea.")
    s = _echo_stream(
        model.stream(
            [{"role": "user", "content": "Write a short poem about the sea."}],
            seed=1,
            max_tokens=160,
            **demo_poem_options(model),
        )
    )
    click.echo(
        f"\n{model.id}: {s.completion_tokens} tokens at {s.tokens_per_s:.1f} tokens/s, "
        f"first token after {s.ttft_s * 1000:.0f} ms, peak memory {peak_rss_mb():.0f} MB"
    )
