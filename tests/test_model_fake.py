"""Model, loading and the single-stream loop on the fake backend (no weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

import slmkit
from slmkit.catalog.store import Store
from slmkit.errors import (
    ChatTemplateError,
    ContextOverflowError,
    EmptyPromptError,
    InvalidOptionsError,
    ModelNotFoundError,
    ModelNotInstalledError,
)
from slmkit.options import make_options
from slmkit.runtime.decoding import SequenceOutput
from tests.fakes import FakeRunner


def test_load_resolves_the_backend_from_the_store(fake_store: Store) -> None:
    model = slmkit.load("fake-chat", store=fake_store, n_ctx=512)
    assert model.backend.name == "fake" and model.n_ctx == 512
    with pytest.raises(ModelNotInstalledError):
        slmkit.load("smollm2-135m-instruct", store=fake_store)
    with pytest.raises(ModelNotFoundError):
        slmkit.load("no-such-model", store=fake_store)


def test_chat_uses_the_template_and_default_system_prompt(fake_model: slmkit.Model) -> None:
    text = fake_model.format_chat([{"role": "user", "content": "hi"}], system="Be nice.")
    assert text == "<|system|>Be nice.\n<|user|>hi\n<|assistant|>"
    assert fake_model.chat("hi", temperature=0).text == "You said: hi (café)"


def test_stream_chunks_join_and_multibyte_text_is_never_split(fake_model: slmkit.Model) -> None:
    chunks = list(fake_model.stream([{"role": "user", "content": "naïve"}], temperature=0))
    assert "".join(c.text for c in chunks) == "You said: naïve (café)"
    assert all("\ufffd" not in c.text for c in chunks)  # UTF-8 carried across byte tokens
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.stats is not None
    assert final.stats.completion_tokens == len("You said: naïve (café)".encode())


def test_max_tokens_and_stop_strings(fake_model: slmkit.Model) -> None:
    c = fake_model.chat("hello", temperature=0, max_tokens=5)
    assert (c.text, c.finish_reason) == ("You s", "length")
    c = fake_model.chat("hello", temperature=0, stop=["hell"])
    assert (c.text, c.finish_reason) == ("You said: ", "stop")


def test_raw_completion_on_a_base_model(fake_store: Store) -> None:
    base = slmkit.load("fake-base", store=fake_store)
    assert base.complete("one two", temperature=0).text == " two one"
    with pytest.raises(ChatTemplateError):
        base.chat("hi")


def test_prompt_cache_reuses_the_common_prefix(fake_model: slmkit.Model) -> None:
    history = [{"role": "user", "content": "first question"}]
    fake_model.chat(history, temperature=0)
    history += [
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second"},
    ]
    final = list(fake_model.stream(history, temperature=0))[-1]
    assert (
        final.stats is not None and final.stats.cached_tokens == 36
    )  # "<|user|>first question\n<|assistant|>"
    runner = fake_model.backend.runner  # type: ignore[attr-defined]
    assert isinstance(runner, FakeRunner)
    assert bytes(runner.cache[0][: final.stats.prompt_tokens]).decode().endswith("<|assistant|>")


def test_overflow_error_and_truncate(fake_store: Store) -> None:
    small = slmkit.load("fake-chat", store=fake_store, n_ctx=128)
    with pytest.raises(ContextOverflowError) as e:
        small.complete("x " * 100, max_tokens=10)
    assert e.value.n_ctx == 128
    final = list(small.stream("y " * 100, max_tokens=10, overflow="truncate", temperature=0))[-1]
    assert final.stats is not None and final.stats.dropped_tokens == 200 + 10 - 128


def test_chat_truncation_drops_oldest_turns_and_keeps_system(fake_store: Store) -> None:
    small = slmkit.load("fake-chat", store=fake_store, n_ctx=160)
    msgs = [{"role": "system", "content": "S"}]
    for i in range(6):
        msgs += [{"role": "user", "content": f"q{i} " * 5}, {"role": "assistant", "content": "a"}]
    msgs.append({"role": "user", "content": "last"})
    chunks = list(small.stream(msgs, max_tokens=30, overflow="truncate", temperature=0))
    assert "".join(c.text for c in chunks).startswith("You said: last")
    assert chunks[-1].stats is not None and chunks[-1].stats.dropped_tokens > 0


def test_seeded_sampling_repeats(fake_model: slmkit.Model) -> None:
    a = fake_model.chat("zz", temperature=1.0, seed=7, max_tokens=12).text
    b = fake_model.chat("zz", temperature=1.0, seed=7, max_tokens=12).text
    assert a == b


def test_logprobs_on_the_single_stream_path(fake_model: slmkit.Model) -> None:
    chunks = list(fake_model.stream("a b", temperature=0, logprobs=2, max_tokens=3))
    lps = [lp for c in chunks for lp in c.logprobs]
    assert [lp.token for lp in lps] == [" ", "b", " "]
    assert all(-0.1 < lp.logprob < 0 and len(lp.top) == 2 for lp in lps)
    assert lps[0].top[0][0] == " "


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m: m.chat([]), EmptyPromptError),
        (lambda m: m.complete("   "), EmptyPromptError),
        (lambda m: m.chat("hi", temperature=-1), InvalidOptionsError),
        (lambda m: m.chat("hi", bogus=1), InvalidOptionsError),
        (lambda m: m.embed([""]), EmptyPromptError),
        (lambda m: m.loglikelihood("", "x"), EmptyPromptError),
    ],
)
def test_bad_input_raises_typed_errors(fake_model: slmkit.Model, call, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        call(fake_model)


def test_sequence_output_holds_back_a_possible_stop(tmp_path: Path) -> None:
    out = SequenceOutput(make_options(stop=["END"], max_tokens=10), prompt_tokens=1)
    got = [out.token(t, bytes([t]), False) for t in b"abEN"]
    assert "".join(c.text for c, _ in got if c) == "ab"  # "EN" may start "END"
    chunk, reason = out.token(ord("X"), b"X", False)
    assert chunk is not None and chunk.text == "E" and reason is None  # holds len("END")-1
    final = out.finish("length")
    assert final.text == "NX" and final.stats is not None and final.stats.completion_tokens == 5


def test_model_card_sampling_fills_only_what_the_caller_left_unset(
    fake_model: slmkit.Model, fake_store: Store
) -> None:
    from fastapi.testclient import TestClient

    from slmkit.options import GenerationOptions, with_defaults
    from slmkit.serve import ModelProvider, ServerSettings, create_app

    card = {"temperature": 0.2, "top_p": 0.9, "top_k": 20, "repeat_penalty": 1.1}
    fake_model.entry = fake_model.entry.model_copy(update={"generation_defaults": card})
    o = fake_model.options(max_tokens=8, seed=3)  # no sampling field set: the card's
    got = (o.temperature, o.top_p, o.top_k, o.repeat_penalty, o.max_tokens)
    assert got == (0.2, 0.9, 20, 1.1, 8)
    o = fake_model.options(temperature=0.0)  # a task asking for greedy gets just that
    assert (o.temperature, o.top_k, o.repeat_penalty) == (0.0, 40, 1.0)
    again = make_options(make_options(max_tokens=3), seed=1)  # rebuilding keeps unset unset
    assert again.model_fields_set == {"max_tokens", "seed"}
    assert with_defaults(again, card).top_p == 0.9
    # a catalog entry's defaults are floats (dict[str, float]); llama.cpp's top_k takes an int
    top_k = with_defaults(again, {"top_k": 64.0}).top_k
    assert type(top_k) is int and top_k == 64
    assert with_defaults(GenerationOptions(), {"grammar": 1.0}) == GenerationOptions()  # type: ignore[dict-item]

    # the server: a request setting neither temperature nor top_p gets the card's sampling
    seen: list[GenerationOptions] = []
    provider = ModelProvider(fake_store, n_seq=2, n_ctx=2048, loader=lambda *a, **k: fake_model)
    with TestClient(create_app(ServerSettings(), provider)) as client:
        engine_submit = provider.get("fake-chat").engine.submit

        def spy(tokens, options, emit):  # type: ignore[no-untyped-def]
            seen.append(options)
            return engine_submit(tokens, options, emit)

        provider.get("fake-chat").engine.submit = spy  # type: ignore[method-assign]
        msgs = [{"role": "user", "content": "hi"}]
        for extra in ({}, {"temperature": 0.9}):
            body = {"model": "fake-chat", "messages": msgs, "max_tokens": 4, **extra}
            assert client.post("/v1/chat/completions", json=body).status_code == 200
    provider.close()
    assert (seen[0].temperature, seen[0].top_k, seen[0].repeat_penalty) == (0.2, 20, 1.1)
    assert (seen[1].temperature, seen[1].top_k, seen[1].repeat_penalty) == (0.9, 0, 1.0)


def test_prompt_lookup_keeps_the_text_and_decodes_less(fake_model: slmkit.Model) -> None:
    """The fake echoes the user's message, so drafts copied from the prompt are right: the
    text equals plain greedy decoding, drafts are counted, and fewer decodes run."""
    runner = fake_model.backend.runner
    msg = "please copy this sentence back to me word for word"
    plain_decodes = runner.decodes
    plain = fake_model.chat(msg, temperature=0, max_tokens=80)
    plain_decodes = runner.decodes - plain_decodes
    # the first greedy drafting request measures how many rows round exactly (once a model)
    fake_model.chat("warm up", temperature=0, max_tokens=4, prompt_lookup=8)
    fake_model.backend._cache.reset()  # type: ignore[attr-defined]
    before = runner.decodes
    fast = fake_model.chat(msg, temperature=0, max_tokens=80, prompt_lookup=8)
    assert fast.text == plain.text == f"You said: {msg} (café)"
    assert (
        fast.stats.accepted_tokens > 20 and fast.stats.drafted_tokens >= fast.stats.accepted_tokens
    )
    assert runner.decodes - before < plain_decodes / 2
    # a stop inside the drafts ends there; max_tokens is never passed
    short = fake_model.chat(msg, temperature=0, max_tokens=15, prompt_lookup=8)
    assert short.text == plain.text[:15] and short.stats.completion_tokens == 15
    stopped = fake_model.chat(msg, temperature=0, max_tokens=80, prompt_lookup=8, stop=["word"])
    assert stopped.text == plain.text.split("word")[0]
